# Two entry points: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use and install the package with every extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench install clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[torch,jax,plot,data,neuromorphic,dev,dist]'
	# for tests/test_neurobench.py's and the interop tests' cross-checks only: their full dependency
	# sets pull torchaudio/torchvision and a second torch, and the parts used need none of them
	# (norse's other dependencies, nir and nirtorch, come with the dev extra)
	$(PY) -m pip install --quiet --no-deps 'neurobench==2.3.0' 'snntorch==1.0.0' 'norse==1.1.0'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neuroplastic run

# two pytest-xdist workers where there are two CPUs (one on a single CPU); the Ray tests share one
# worker (xdist_group "ray"); tests/conftest.py shares compiled XLA programs between tests
test: $(STAMP)
	$(PY) -m pytest -q -n logical --maxprocesses=2 --dist loadgroup

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# all three suites (ffwd, peers, rules); the peers suite needs the bench-only environments
bench: $(STAMP) bench-peers-env
	$(PY) bench/run.py --suite all

# snnTorch, Norse, SpikingJelly, Spyx and Slax, each in its own .bench-venvs/<peer>
# (they pin their own torch/JAX/Flax); one that cannot be installed is reported unavailable
.PHONY: bench-peers-env
bench-peers-env: $(STAMP)
	$(PY) bench/run.py --setup-only

clean:
	rm -rf $(VENV) runs .pytest_cache
