"""Property-based tests of the TOML run-config reader (hypothesis): any document gives a valid
RunConfig (which writes back to the same settings) or a ValueError, never another exception.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroplastic.config import SECTIONS, RunConfig, config_to_dict, config_to_toml, loads_config


def examples(n: int) -> settings:
    """``n`` cases, the same ones on every run and machine (no example database, no deadline)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------- a TOML writer for any value
def toml_key(k: str) -> str:
    return json.dumps(k)  # a quoted key is always valid TOML (JSON escapes are TOML basic-string escapes)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v) if any(c in repr(v) for c in ".e") else repr(v) + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict) -> str:
    top = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{toml_key(k)}]\n" + "\n".join(f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


# ----------------------------------------------------------------------------- strategies
KNOWN_KEYS = sorted({k for keys in SECTIONS.values() for k in keys} | {
    "seed", "name", "variant", "n_units", "as_sequence", "threshold", "k", "feedback", "lr", "epochs", "n_steps", "window",
})
NAMES = ["mnist1d", "randman", "yinyang", "digits", "bptt", "eprop-random", "eprop-symmetric", "tbptt", "ottt", "tc", "sf",
         "rate", "rsnn", "rsnn-alif", "ce_mean", "ce_sum", "adam", "sgd", "naive", "cosine", "constant", "torch", "jax",
         "float32", "float64", "offline", "online", "deferred", "cpu", "triangle", "fast_sigmoid", ""]

scalars = st.one_of(
    st.integers(-3, 300),
    st.integers(min_value=-(10 ** 400), max_value=10 ** 400),  # TOML integers have no size limit in tomllib
    st.integers(300, 400).map(lambda e: 10 ** e),  # ... beyond the float range
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(1e-6, 1e3),
    st.booleans(),
    st.sampled_from(NAMES),
    st.text(max_size=8),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.dates(),
    st.times(),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
                      max_leaves=6)
sections = st.one_of(st.sampled_from([*SECTIONS, "seed"]), st.text(min_size=1, max_size=8))
documents = st.dictionaries(sections, st.one_of(st.dictionaries(keys, values, max_size=6), scalars), max_size=6)


NUMERIC = [("network", "hidden"), ("network", "tau_mem"), ("network", "tau_out"), ("trainer", "lr"), ("trainer", "epochs"),
           ("trainer", "batch_size"), ("trainer", "reg_rate_hz"), ("trainer", "reg_strength"),
           ("trainer", "checkpoint_every"), ("seed", "seed")]
edge_numbers = st.one_of(
    st.sampled_from([0, -1, 1, 0.0, -0.0, 5e-324, 1e308, float("nan"), float("inf"), float("-inf"), True, "1", [1],
                     2 ** 63, -(2 ** 63), 2 ** 1024, 10 ** 400, -(10 ** 400)]),  # ints past the float range too
    st.integers(-(2 ** 70), 2 ** 70), st.floats(),
)


@st.composite
def valid_looking(draw) -> dict:
    """The default config's sections with a few keys changed, added or removed."""
    doc = config_to_dict(RunConfig())
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*SECTIONS]))
        table = doc.setdefault(section, {})
        action = draw(st.sampled_from(["set", "name", "drop", "number", "number"]))
        if action == "number":  # a numeric setting at the edges of its type
            section, key = draw(st.sampled_from(NUMERIC))
            if section == "seed":
                doc["seed"] = draw(edge_numbers)
            else:
                doc.setdefault(section, {})[key] = draw(edge_numbers)
        elif action == "drop" and table:
            table.pop(draw(st.sampled_from(sorted(table))))
        elif action == "name":
            table["name" if section in ("data", "encoder", "rule") else draw(st.sampled_from(sorted(SECTIONS[section])))] = draw(st.sampled_from(NAMES))
        else:
            own = sorted(SECTIONS[section]) + ["seed"]  # mostly the section's own keys, sometimes any
            table[draw(st.one_of(st.sampled_from(own), keys))] = draw(values)
    return doc


def check(text: str) -> None:
    """``loads_config(text)``: a RunConfig that round-trips through TOML, or a ValueError."""
    try:
        cfg = loads_config(text)
    except ValueError as err:
        assert str(err), "an error without a message"
        return
    assert isinstance(cfg, RunConfig)
    back = loads_config(config_to_toml(cfg))
    assert json.dumps(back.to_dict(), sort_keys=True) == json.dumps(cfg.to_dict(), sort_keys=True)


# ----------------------------------------------------------------------------- properties
@examples(150)
@given(doc=documents)
def test_random_documents_give_a_config_or_a_value_error(doc):
    check(to_toml(doc))


@examples(150)
@given(doc=valid_looking())
def test_valid_looking_documents_give_a_config_or_a_value_error(doc):
    check(to_toml(doc))


@examples(100)
@given(field=st.sampled_from(NUMERIC), value=edge_numbers)
def test_numeric_settings_at_the_edges_give_a_config_or_a_value_error(field, value):
    doc = config_to_dict(RunConfig())
    section, key = field
    if section == "seed":
        doc["seed"] = value
    else:
        doc[section][key] = value
    check(to_toml(doc))


@examples(100)
@given(text=st.one_of(st.text(max_size=60), st.text(alphabet="[]=\"'.,{}#\n tfalsenu0123456789-+_eE", max_size=60)))
def test_random_text_gives_a_config_or_a_value_error(text):
    check(text)


@pytest.mark.parametrize("text, message", [
    ("[network]\ntau_mem = " + "9" * 400 + "\n", "network.tau_mem: expected a positive time constant"),
    ("[trainer]\nlr = " + "1" + "0" * 400 + "\n", "trainer.lr: expected a positive number"),
    ("[trainer]\nreg_rate_hz = " + "1" + "0" * 400 + "\n", "trainer.reg_rate_hz: expected a non-negative rate"),
])
def test_integers_too_large_for_a_float_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        loads_config(text)
