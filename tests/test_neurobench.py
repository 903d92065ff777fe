"""NeuroBench-style efficiency metrics (``neuroplastic.analysis.neurobench``).

Every metric is checked against values computed by hand on tiny networks with known
spikes and weights that contain zeros (feed-forward with dense input, recurrent with a
masked self-connection diagonal, spike input and a backward link from an analog readout),
on both backends.  ``current_errors`` is checked against BPTT's weight gradients, the
backward count against SpikeGrad's own ``bwd`` count, and the whole set against the
``neurobench`` package's metric objects (``SynapticOperations``, ``ActivationSparsity``,
``ParameterCount``, ``ConnectionSparsity``, ``Footprint``) on a small snnTorch model.
That cross-check needs ``neurobench`` and ``snntorch``, which are not dependencies of
neuroplastic; ``make install`` adds them for this test (so ``make test`` and CI run it)
and it is skipped where they are not installed.  (They install offline without
touching torch: ``pip install --no-deps neurobench==2.3.0 snntorch==1.0.0``; the full
dependency set would add tonic, torchaudio, librosa and numba, which the metrics do not use.)
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.analysis.neurobench import (
    backward_synaptic_operations,
    current_errors,
    efficiency_metrics,
    summary_rows,
)
from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.network import Link, Network

# ---------------------------------------------------------------------------- feed-forward
# input (T=2, B=2, 3), analog: MACs
X_FF = np.array([
    [[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]],
    [[0.0, 2.0, 0.0], [0.3, 0.0, 0.0]],
])
W0_FF = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])  # fan-out 1, 2, 0
Z_FF = np.array([  # hidden spikes (T, B, 2)
    [[1.0, 0.0], [0.0, 0.0]],
    [[1.0, 1.0], [0.0, 1.0]],
])
W1_FF = np.array([[0.7, 0.0], [0.2, -0.1]])  # fan-out 1, 2


def ff_net() -> Network:
    return Network(3, [Dense(2), LIF(), Dense(2), LeakyReadout()])


def ff_params(B):
    return B.tree_asarray({"layers": [{"w": W0_FF, "cell": {}}, {"w": W1_FF, "cell": {}}], "links": []})


def test_feed_forward_hand_computed(backend_name):
    B = get_backend(backend_name)
    net = ff_net()
    ys = np.random.default_rng(0).normal(size=(2, 2, 2))  # readout: analog, not counted as activations
    m = efficiency_metrics(net, ff_params(B), B.asarray(X_FF), {"out": [B.asarray(Z_FF), B.asarray(ys)]})
    # input units active at (t, b): unit 0 twice, unit 1 once, unit 2 once -> 2*1 + 1*2 + 1*0 = 4 MACs over 2 samples
    assert m["effective_macs"] == 2.0
    # hidden spikes: unit 0 twice, unit 1 twice -> 2*1 + 2*2 = 6 ACs over 2 samples
    assert m["effective_acs"] == 3.0
    assert m["synops_per_sample"] == 5.0
    assert m["dense_synops"] == 2 * 3 * 2 + 2 * 2 * 2
    assert [c["kind"] for c in m["connections"]] == ["MAC", "AC"]
    assert m["activation_sparsity"] == 0.5  # 4 of the 8 hidden entries are zero
    assert m["neuron_updates"] == 2 * 2 + 2 * 2  # LIF and readout neurons, T = 2
    assert m["param_count"] == 10
    assert m["connection_sparsity"] == pytest.approx(4 / 10)  # three zeros in W0, one in W1
    # float32: 10 weights; one sample's state: LIF v + out, readout v + out (2 neurons each)
    assert m["param_bytes"] == 40 and m["state_bytes"] == 8 * 4 and m["footprint_bytes"] == 72
    assert m["samples"] == 2 and m["time_steps"] == 2
    l0, l1 = m["layers"]
    assert (l0["effective_macs"], l0["effective_acs"], l0["activation_sparsity"], l0["neuron_updates"]) == (2.0, 0.0, 0.5, 4)
    assert (l1["effective_macs"], l1["effective_acs"], l1["activation_sparsity"], l1["spiking"]) == (0.0, 3.0, None, False)


def test_spike_input_counts_accumulates_and_ternary_is_a_spike():
    B = get_backend("numpy", dtype="float64")
    net = ff_net()
    xs = np.sign(X_FF) * np.array([1.0, -1.0, 1.0])  # values in {-1, 0, 1}
    m = efficiency_metrics(net, ff_params(B), xs, {"out": [Z_FF, np.zeros((2, 2, 2))]})
    assert [c["kind"] for c in m["connections"]] == ["AC", "AC"]
    assert (m["effective_acs"], m["effective_macs"]) == (2.0 + 3.0, 0.0)


# ---------------------------------------------------------------------------- recurrent
X_R = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])  # (T=3, B=1, 2) spikes
W_R = np.array([[1.0, 2.0], [0.0, 3.0]])  # fan-out 2, 1
W_REC = np.array([[5.0, 1.0], [1.0, 5.0]])  # diagonal masked: effective [[0, 1], [1, 0]]
W1_R = np.array([[0.5], [0.0]])  # fan-out 1, 0; fan-in 1
W_LINK = np.array([[1.0, -1.0]])  # readout (t-1) -> block 0: fan-out 2
Z_R = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
Y_R = np.array([[[0.5]], [[0.0]], [[0.7]]])  # analog readout


def rec_net() -> Network:
    return Network(2, [RecurrentDense(2, self_connections=False), LIF(), Dense(1), LeakyReadout()], links=[Link(1, 0)])


def rec_params(B):
    return B.tree_asarray({
        "layers": [{"w": W_R, "w_rec": W_REC, "cell": {}}, {"w": W1_R, "cell": {}}],
        "links": [{"w": W_LINK}],
    })


def test_recurrent_hand_computed(backend_name):
    B = get_backend(backend_name)
    net = rec_net()
    m = efficiency_metrics(net, rec_params(B), B.asarray(X_R), {"out": [B.asarray(Z_R), B.asarray(Y_R)]})
    by = {c["connection"]: c for c in m["connections"]}
    assert by["w: input -> block 0"]["synops"] == 2 * 2 + 2 * 1  # each input unit spikes twice
    # previous-step spikes: t=1 sees [1, 0], t=2 sees [0, 1] (t=0 the zero initial state); fan-out 1 each
    assert by["w_rec: block 0 -> block 0 (t-1)"]["synops"] == 2
    assert by["w: block 0 -> block 1"]["synops"] == 2 * 1 + 2 * 0
    link = by["links[0]: block 1 -> block 0 (t-1)"]
    assert link["kind"] == "MAC" and link["synops"] == 1 * 2  # only y_0 = 0.5 is nonzero among y_{t-1}
    assert (m["effective_acs"], m["effective_macs"], m["synops_per_sample"]) == (10.0, 2.0, 12.0)
    assert m["dense_synops"] == 12 + 12 + 6 + 6
    assert m["connection_sparsity"] == pytest.approx(4 / 12)  # 1 + 2 (masked diagonal) + 1 + 0
    assert m["param_count"] == 12
    assert m["activation_sparsity"] == pytest.approx(2 / 6)
    assert m["neuron_updates"] == 3 * 2 + 3 * 1


def test_recurrent_initial_state_feeds_the_first_step():
    B = get_backend("numpy", dtype="float64")
    net = rec_net()
    state = net.initial_state(B, 1)
    state["layers"][0]["out"] = np.array([[0.0, 1.0]])
    state["layers"][1]["out"] = np.array([[0.2]])
    m = efficiency_metrics(net, rec_params(B), X_R, {"out": [Z_R, Y_R]}, state=state)
    by = {c["connection"]: c["synops"] for c in m["connections"]}
    assert by["w_rec: block 0 -> block 0 (t-1)"] == 3
    assert by["links[0]: block 1 -> block 0 (t-1)"] == 4


def test_backward_hand_computed(backend_name):
    B = get_backend(backend_name)
    net = rec_net()
    d0 = np.array([[[0.1, 0.0]], [[0.0, 0.0]], [[0.2, -0.3]]])
    d1 = np.array([[[1.0]], [[0.0]], [[-1.0]]])
    back = backward_synaptic_operations(net, rec_params(B), [B.asarray(d0), B.asarray(d1)])
    by = {c["connection"]: c["synops"] for c in back["connections"]}
    assert "w: input -> block 0" not in by  # nothing is sent to the input
    assert by["w_rec: block 0 -> block 0 (t-1)"] == 2  # only t >= 1: both neurons at t=2, fan-in 1
    assert by["links[0]: block 1 -> block 0 (t-1)"] == 2
    assert by["w: block 0 -> block 1"] == 2  # two nonzero readout errors, fan-in 1 (one zero weight)
    assert back["synops"] == 6 and back["dense_synops"] == 8 + 4 + 6
    assert back["error_sparsity"] == pytest.approx(4 / 9)
    assert [l["error_sparsity"] for l in back["layers"]] == [pytest.approx(0.5), pytest.approx(1 / 3)]
    m = efficiency_metrics(net, rec_params(B), B.asarray(X_R), {"out": [B.asarray(Z_R), B.asarray(Y_R)]}, errors=[B.asarray(d0), B.asarray(d1)])
    assert m["backward"]["synops"] == 6
    labels = dict(summary_rows(m))
    assert labels["backward synaptic operations / sample"] == "6" and labels["synaptic operations / sample (ACs + MACs)"] == "12"


# ---------------------------------------------------------------------------- runs and backends
def small_run_net() -> Network:
    return Network(4, [RecurrentDense(6), LIF(tau_mem=10.0), Dense(3), LeakyReadout()])


def test_torch_equals_jax_and_own_run_equals_given_record():
    net = small_run_net()
    xs = (np.random.default_rng(1).random((12, 5, 4)) < 0.4).astype(np.float64) * 1.5
    out = {}
    for name in ("torch", "jax"):
        B = get_backend(name)
        p = net.init(3, backend=B)
        m = efficiency_metrics(net, p, B.asarray(xs))
        _, _, rec = net.run(p, B.asarray(xs), record=True)
        assert efficiency_metrics(net, p, B.asarray(xs), rec) == m
        spikes = B.to_numpy(rec["out"][0])
        assert 0.0 < m["activation_sparsity"] < 1.0
        assert m["activation_sparsity"] == pytest.approx(1 - spikes.mean())
        out[name] = m
    assert out["torch"] == out["jax"]


def test_current_errors_are_bptts_and_agree_across_backends():
    net = small_run_net()
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(8, 3, 4))
    ys = np.array([0, 2, 1])
    errs = {}
    for name in ("torch", "jax"):
        B = get_backend(name, dtype="float64")
        p = net.init(4, backend=B, dtype="float64")
        e = current_errors(net, p, B.asarray(xs), B.asarray(ys), "ce_sum")
        from neuroplastic.losses import Objective, make_loss
        from neuroplastic.rules import make_rule

        grads = make_rule("bptt").gradients(net, p, {}, (B.asarray(xs), B.asarray(ys)), Objective(make_loss("ce_sum")))[0]
        _, _, rec = net.run(p, B.asarray(xs))
        z = B.to_numpy(rec["out"][0])
        d0, d1 = B.to_numpy(e[0]), B.to_numpy(e[1])
        # dL/dW = sum_t pre_t^T delta_t for each connection
        np.testing.assert_allclose(np.einsum("tbi,tbj->ij", z, d1), B.to_numpy(grads["layers"][1]["w"]), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.einsum("tbi,tbj->ij", xs, d0), B.to_numpy(grads["layers"][0]["w"]), rtol=1e-9, atol=1e-12)
        z_prev = np.concatenate([np.zeros_like(z[:1]), z[:-1]])
        np.testing.assert_allclose(np.einsum("tbi,tbj->ij", z_prev, d0), B.to_numpy(grads["layers"][0]["w_rec"]), rtol=1e-9, atol=1e-12)
        errs[name] = [d0, d1]
    for a, b in zip(errs["torch"], errs["jax"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_backward_count_equals_spikegrads_for_single_ternary_events(backend_name):
    """SpikeGrad's integer ANN counts ``sum |E| fanin`` (``bwd``) and ``sum |S| fanout`` (``fwd``):
    with at most one event per unit they are these counts, times the batch size."""
    from neuroplastic.rules.spikegrad import SpikeGrad, SpikeGradNet

    B = get_backend(backend_name, dtype="float64")
    sg_net = SpikeGradNet(3, [Dense(2), Dense(2)])
    w1 = np.array([[0.6, 0.4], [0.5, -0.3], [0.2, 0.9]])
    w2 = np.array([[0.5, -0.45], [0.3, 0.2]])
    params = B.tree_asarray({"layers": [{"w": w1}, {"w": w2}]})
    x = B.asarray(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    labels = B.asarray(np.array([0, 1, 1, 0]))
    res = SpikeGrad(alpha=1.5).integer_pass(sg_net, params, x, labels)
    S1, V = (B.to_numpy(o) for o in res["outputs"])
    E1, E2 = (B.to_numpy(e) for e in res["errors"])
    assert np.abs(S1).max() == 1 and np.abs(E1).max() == 1 and np.abs(E2).max() == 1  # single events only
    net = Network(3, [Dense(2), Dense(2)])  # Identity cells: the same two linear maps, one step
    p = {"layers": [{"w": params["layers"][0]["w"], "cell": {}}, {"w": params["layers"][1]["w"], "cell": {}}], "links": []}
    n = 4
    m = efficiency_metrics(net, p, x[None], {"out": [B.asarray(S1[None]), B.asarray(V[None])]}, errors=[B.asarray(E1[None]), B.asarray(E2[None])])
    syn = {k: B.to_numpy(v) for k, v in res["synops"].items()}
    assert [c["synops"] * n for c in m["connections"]] == pytest.approx(list(syn["fwd"]))
    assert m["backward"]["synops"] * n == pytest.approx(float(syn["bwd"].sum()))


# ---------------------------------------------------------------------------- errors
def test_bad_input_names_the_argument():
    B = get_backend("numpy", dtype="float64")
    net = ff_net()
    p = ff_params(B)
    with pytest.raises(ValueError, match="net: expected a neuroplastic Network"):
        efficiency_metrics("net", p, X_FF)
    with pytest.raises(ValueError, match="xs: expected 3 input features"):
        efficiency_metrics(net, p, X_FF[:, :, :2])
    with pytest.raises(ValueError, match=r"rec\['out'\]\[0\]: expected shape"):
        efficiency_metrics(net, p, X_FF, {"out": [Z_FF[:1], Z_FF]})
    with pytest.raises(ValueError, match="rec: expected the record"):
        efficiency_metrics(net, p, X_FF, {"spikes": []})
    with pytest.raises(ValueError, match=r"errors: expected a list of 2 arrays"):
        backward_synaptic_operations(net, p, [Z_FF])
    with pytest.raises(ValueError, match=r"errors\[1\]: expected shape"):
        backward_synaptic_operations(net, p, [Z_FF, Z_FF[:1]])
    with pytest.raises(ValueError, match="state: layers"):
        efficiency_metrics(net, p, X_FF, {"out": [Z_FF, Z_FF]}, state=net.initial_state(B, 5))
    with pytest.raises(ValueError, match="metrics: expected the dict"):
        summary_rows([1])


# ---------------------------------------------------------------------------- the neurobench package
def test_matches_the_neurobench_package_on_a_small_snntorch_model():
    pytest.importorskip("snntorch")
    nb_workload = pytest.importorskip("neurobench.metrics.workload")
    nb_static = pytest.importorskip("neurobench.metrics.static")
    from neurobench.models import SNNTorchModel
    import snntorch as snn
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(4, 5, bias=False)
            self.lif1 = snn.Leaky(beta=0.8, threshold=0.5)
            self.fc2 = torch.nn.Linear(5, 3, bias=False)
            self.lif2 = snn.Leaky(beta=0.8, threshold=0.5)
            self.record: list = []

        def reset(self) -> None:
            self.mem1, self.mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()

        def forward(self, x):
            s1, self.mem1 = self.lif1(self.fc1(x), self.mem1)
            s2, self.mem2 = self.lif2(self.fc2(s1), self.mem2)
            self.record.append((s1.detach().clone(), s2.detach().clone()))
            return s2, self.mem2

    torch_net = Net()
    with torch.no_grad():  # prune some synapses: effective operations skip zero weights
        torch_net.fc1.weight[torch.rand(5, 4) < 0.3] = 0.0
        torch_net.fc2.weight[0, :2] = 0.0
        torch_net.fc1.weight.mul_(2.0)
    data = torch.randn(6, 10, 4)  # (batch, T, features), analog input
    model = SNNTorchModel(torch_net)
    model.register_hooks()
    preds = model(data)
    batch = (data, torch.zeros(6))
    nb_syn = nb_workload.SynapticOperations()(model, preds, batch)
    nb_act = nb_workload.ActivationSparsity()(model, preds, batch)
    nb_params = nb_static.ParameterCount()(model)
    nb_conn = nb_static.ConnectionSparsity()(model)
    nb_foot = nb_static.Footprint()(model)
    model.cleanup_hooks()

    s1 = torch.stack([r[0] for r in torch_net.record]).numpy()  # (T, B, 5)
    s2 = torch.stack([r[1] for r in torch_net.record]).numpy()
    assert 0 < s1.mean() < 1 and 0 < s2.mean() < 1
    B = get_backend("torch")
    net = Network(4, [Dense(5), LIF(), Dense(3), LIF()])
    params = {"layers": [{"w": torch_net.fc1.weight.detach().T.contiguous(), "cell": {}},
                         {"w": torch_net.fc2.weight.detach().T.contiguous(), "cell": {}}], "links": []}
    xs = data.transpose(0, 1).contiguous()
    m = efficiency_metrics(net, params, xs, {"out": [B.asarray(s1), B.asarray(s2)]})
    assert m["effective_macs"] == pytest.approx(nb_syn["Effective_MACs"])
    assert m["effective_acs"] == pytest.approx(nb_syn["Effective_ACs"])
    assert m["dense_synops"] == pytest.approx(nb_syn["Dense"])
    assert m["activation_sparsity"] == pytest.approx(nb_act)
    assert m["param_count"] == nb_params
    assert m["connection_sparsity"] == pytest.approx(nb_conn, abs=1e-4)  # neurobench rounds to 4 decimals
    # neurobench's footprint adds snnTorch's buffers (threshold, beta, ...); ours adds the state instead
    buffers = sum(b.numel() * b.element_size() for b in torch_net.buffers())
    assert m["param_bytes"] == nb_foot - buffers


def test_results_are_plain_python_numbers():
    import json

    B = get_backend("jax")
    net = rec_net()
    m = efficiency_metrics(net, rec_params(B), B.asarray(X_R), {"out": [B.asarray(Z_R), B.asarray(Y_R)]},
                           errors=[B.asarray(np.ones((3, 1, 2))), B.asarray(np.ones((3, 1, 1)))])
    assert json.loads(json.dumps(m)) == m  # no numpy scalars: json.dumps would fail on them
