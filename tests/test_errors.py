"""Bad input gets a clear error that names the argument."""

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.data import from_arrays, load_dataset
from neuroplastic.layers import Dense
from neuroplastic.losses import make_loss
from neuroplastic.models import build_model
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.train import Trainer, make_optimizer


def small():
    rng = np.random.default_rng(0)
    return from_arrays(rng.normal(size=(5, 20, 3)), rng.integers(0, 2, 20), rng.normal(size=(5, 8, 3)), rng.integers(0, 2, 8))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: get_backend("tensorflow"), "backend: unknown backend 'tensorflow'"),
        (lambda: get_backend("jax", dtype="float16"), "dtype: expected"),
        (lambda: make_rule("backprop-magic"), "rule: unknown rule 'backprop-magic'"),
        (lambda: make_loss("hinge"), "loss: unknown loss 'hinge'"),
        (lambda: LIF(surrogate="softplus"), "surrogate: unknown surrogate 'softplus'"),
        (lambda: LIF(tau_mem=-20.0), "tau_mem must be a positive time constant"),
        (lambda: make_optimizer("adagrad", 1e-3), "optimizer: unknown optimizer"),
        (lambda: make_optimizer("adam", -1.0), "lr: learning rate must be a positive"),
        (lambda: load_dataset("imagenet"), "data: unknown dataset 'imagenet'"),
        (lambda: build_model("transformer", 1, 2), "model: unknown model"),
        (lambda: build_model("rsnn", 1, 2, hidden=0), "hidden: expected positive"),
        (lambda: Dense(0), "size must be a positive integer"),
        (lambda: Network(0, [Dense(3)]), "n_in must be a positive integer"),
    ],
)
def test_named_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_trainer_errors(backend_name):
    net = Network(3, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    tr = Trainer(net, "bptt", "ce_sum", backend=backend_name, progress=False)
    params = net.init(0, backend=backend_name)
    data = small()
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        tr.fit(params, data, epochs=1, batch_size=0)
    wrong = Network(5, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    with pytest.raises(ValueError, match="data: arrays has 3 features but the network expects n_in=5"):
        Trainer(wrong, "bptt", backend=backend_name, progress=False).fit(wrong.init(0, backend=backend_name), data, epochs=1)
    with pytest.raises(ValueError, match="mode: rule 'bptt' cannot train in mode 'online'"):
        Trainer(net, "bptt", backend=backend_name, mode="online")
    with pytest.raises(ValueError, match="mode: unknown training mode 'sideways'"):
        Trainer(net, "bptt", backend=backend_name, mode="sideways")
    # a loss that does not split over time steps is refused when the trainer is made,
    # not deep inside the compiled step
    for mode in ("online", "deferred"):
        with pytest.raises(ValueError, match=f"loss: 'ce_mean' does not decompose over time steps, so mode='{mode}'"):
            Trainer(net, "eprop-symmetric", "ce_mean", backend=backend_name, mode=mode)


def test_dataset_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 20, 3))
    x[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="x_train: contains NaN or infinite"):
        from_arrays(x, rng.integers(0, 2, 20), x[:, :4], rng.integers(0, 2, 4))
    with pytest.raises(ValueError, match="y_train: expected 20 labels"):
        from_arrays(rng.normal(size=(5, 20, 3)), rng.integers(0, 2, 19), rng.normal(size=(5, 4, 3)), rng.integers(0, 2, 4))
    with pytest.raises(ValueError, match="x_test: expected a time-major array"):
        from_arrays(rng.normal(size=(5, 20, 3)), rng.integers(0, 2, 20), rng.normal(size=(4, 3)), rng.integers(0, 2, 4))


def test_cli_reports_errors_by_name(capsys, tmp_path):
    from neuroplastic.cli import main

    assert main(["train", "--backend", "mxnet", "--out", str(tmp_path)]) == 2
    assert "backend: unknown backend 'mxnet'" in capsys.readouterr().err
    assert main(["train", "--batch-size", "0", "--out", str(tmp_path)]) == 2
    assert "batch_size: expected a positive integer" in capsys.readouterr().err
    assert main(["train", "--rule", "nope", "--out", str(tmp_path)]) == 2
    assert "rule: unknown rule 'nope'" in capsys.readouterr().err


def test_study_config_errors():
    from dataclasses import replace

    from neuroplastic.study import StudyConfig

    main = StudyConfig.default()
    with pytest.raises(ValueError, match="rules: unknown rule 'nope'"):
        main.with_rules(["bptt", "nope"])
    with pytest.raises(ValueError, match="rules: unknown rule 'eprop-symetric'; did you mean 'eprop-symmetric'"):
        main.with_rules(["eprop-symetric"])
    with pytest.raises(ValueError, match="reference: 'ostl' must be one of"):
        replace(main.with_rules(["bptt"]), reference="ostl").validate()
    with pytest.raises(ValueError, match=r"network.tau_mem: expected a positive time constant"):
        replace(main, base=replace(main.base, tau_mem=0)).validate()
    with pytest.raises(ValueError, match="trainer.reg_rate_hz: expected a non-negative rate"):
        replace(main, base=replace(main.base, reg_rate_hz=-1.0)).validate()
    with pytest.raises(ValueError, match="study.seeds: expected a positive integer, got 0"):
        replace(main, seeds=0).validate()
    replace(main, base=replace(main.base, reg_rate_hz=None)).validate()  # no regulariser is fine


