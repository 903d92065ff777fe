"""Adapters: a plain torch.nn.Module and an Equinox MLP trained by the library's rules."""

import numpy as np
import pytest

from neuroplastic.adapters import EquinoxAdapter, JaxFunctionAdapter, TorchModuleAdapter, adapt
from neuroplastic.data import from_arrays
from neuroplastic.losses import Objective, make_loss
from neuroplastic.rules import make_rule
from neuroplastic.train import Trainer

torch = pytest.importorskip("torch")


def _blobs(n: int = 240, n_in: int = 6, seed: int = 0):
    """Three Gaussian blobs in ``n_in`` dimensions, one time step: ``(1, N, n_in)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (3, n_in))
    y = rng.integers(0, 3, n)
    x = centres[y] + rng.normal(0, 0.7, (n, n_in))
    return x.astype(np.float32)[None], y.astype(np.int64)


def _torch_mlp(n_in: int = 6, seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def _eqx_mlp(n_in: int = 6, seed: int = 0):
    eqx = pytest.importorskip("equinox")
    import jax

    return eqx.nn.MLP(n_in, 3, 16, 1, activation=jax.numpy.tanh, key=jax.random.PRNGKey(seed))


def test_torch_adapter_gradient_is_torch_autograd():
    from neuroplastic.backend import get_backend

    B = get_backend("torch", dtype="float64")
    mlp = _torch_mlp(dtype=torch.float64)
    net = adapt(mlp, n_in=6)
    assert isinstance(net, TorchModuleAdapter) and net.spiking == [False]
    x, y = _blobs(32)
    batch = (B.asarray(x), B.asarray(y))
    grads, _, aux = make_rule("bptt").gradients(net, net.params(), {}, batch, Objective(make_loss("ce_sum")))
    # ground truth: the same loss on the module itself, differentiated by torch
    logits = mlp(torch.as_tensor(x[0], dtype=torch.float64))
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y))
    loss.backward()
    assert float(aux["loss"]) == pytest.approx(float(loss.detach()), rel=1e-12)
    for name, p in mlp.named_parameters():
        np.testing.assert_allclose(grads[name].numpy(), p.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_equinox_adapter_gradient_is_jax_grad():
    eqx = pytest.importorskip("equinox")
    import jax
    import jax.numpy as jnp

    from neuroplastic.backend import get_backend

    B = get_backend("jax")
    mlp = _eqx_mlp()
    net = adapt(mlp, n_in=6)
    assert isinstance(net, EquinoxAdapter)
    x, y = _blobs(32)
    batch = (B.asarray(x), B.asarray(y))
    grads, _, aux = make_rule("bptt").gradients(net, net.params(), {}, batch, Objective(make_loss("ce_sum")))

    def direct(model):
        logits = jax.vmap(model)(jnp.asarray(x[0]))
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(y)[:, None], axis=1))

    loss, g = eqx.filter_value_and_grad(direct)(mlp)
    assert float(aux["loss"]) == pytest.approx(float(loss), rel=1e-5)
    ours = net.unflatten(grads)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_inexact_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_time_distributed_applies_the_model_at_every_step():
    from neuroplastic.backend import get_backend

    B = get_backend("torch")
    mlp = _torch_mlp()
    net = adapt(mlp, n_in=6)
    xs = np.random.default_rng(1).normal(size=(5, 4, 6)).astype(np.float32)
    ys, state, rec = net.run(net.params(), B.asarray(xs), record=True)
    assert ys.shape == (5, 4, 3) and state == {} and rec["out"][0] is ys and rec["state"] == [{}]
    with torch.no_grad():
        for t in range(5):
            np.testing.assert_allclose(ys[t].numpy(), mlp(torch.as_tensor(xs[t])).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("framework", ["torch", "equinox"])
@pytest.mark.parametrize("rule", ["bptt", "manhattan", "manhattan-conductance"])
def test_rules_train_a_framework_mlp(framework, rule):
    x, y = _blobs(300, seed=3)
    data = from_arrays(x[:, :200], y[:200], x[:, 200:], y[200:], name="blobs")
    if framework == "torch":
        net, backend = adapt(_torch_mlp(seed=1), n_in=6), "torch"
    else:
        net, backend = adapt(_eqx_mlp(seed=1), n_in=6), "jax"
    if rule == "bptt":
        trainer = Trainer(net, rule, loss="ce_sum", optimizer="adam", lr=0.02, backend=backend, progress=False)
    else:
        options = {"step": 0.01} if rule == "manhattan" else {"delta": 0.004, "scale": 1.0}
        trainer = Trainer(net, make_rule(rule, **options), loss="ce_sum", optimizer="naive", lr=1.0, backend=backend, progress=False)
    before = trainer.evaluate(net.params(), data.x_test, data.y_test)["acc"]
    params, hist = trainer.fit(net.params(), data, epochs=6, batch_size=20)
    assert hist[-1]["test_acc"] >= 0.9 > before, (before, hist[-1]["test_acc"])
    # writing back: the user's own model now holds the trained parameters
    model = net.to_model(params)
    if framework == "torch":
        assert model is net.module
        with torch.no_grad():
            pred = model(torch.as_tensor(data.x_test[0])).argmax(-1).numpy()
    else:
        import jax

        pred = np.asarray(jax.vmap(model)(data.x_test[0]).argmax(-1))
    assert np.mean(pred == data.y_test) == pytest.approx(hist[-1]["test_acc"])


def test_function_adapter_takes_a_pure_jax_model():
    import jax.numpy as jnp

    from neuroplastic.backend import get_backend

    def apply(p, x):
        return jnp.tanh(x @ p["dense"]["w"] + p["dense"]["b"]) @ p["out"]

    rng = np.random.default_rng(0)
    p0 = {"dense": {"w": jnp.asarray(rng.normal(size=(6, 8))), "b": jnp.zeros(8)}, "out": jnp.asarray(rng.normal(size=(8, 3)))}
    net = adapt(apply, n_in=6, params=p0)
    assert isinstance(net, JaxFunctionAdapter)
    assert sorted(net.params()) == ["['dense']['b']", "['dense']['w']", "['out']"]
    xs = get_backend("jax").asarray(rng.normal(size=(1, 5, 6)))
    ys, _, _ = net.run(net.params(), xs)
    np.testing.assert_allclose(np.asarray(ys[0]), np.asarray(apply(p0, xs[0])), rtol=1e-6)
    back = net.to_model(net.params())
    assert set(back) == {"dense", "out"}


def test_adapter_errors_name_the_argument():
    from neuroplastic.backend import get_backend

    mlp = _torch_mlp()
    with pytest.raises(ValueError, match="n_in must be a positive integer"):
        adapt(mlp, n_in=0)
    with pytest.raises(ValueError, match="spiking"):
        adapt(mlp, n_in=6, spiking=[True, False])
    with pytest.raises(ValueError, match="module: expected a torch.nn.Module"):
        TorchModuleAdapter(object(), n_in=6)
    with pytest.raises(ValueError, match="model: cannot adapt"):
        adapt(3, n_in=6)
    with pytest.raises(ValueError, match="params: wrapping a function"):
        adapt(lambda p, x: x, n_in=6)
    net = adapt(mlp, n_in=6)
    B = get_backend("torch")
    with pytest.raises(ValueError, match="xs: expected 6 input features"):
        net.run(net.params(), B.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match="xs: expected a time-major array"):
        net.run(net.params(), B.zeros((2, 6)))
    with pytest.raises(ValueError, match="params: missing torch parameter"):
        net.to_model({})
