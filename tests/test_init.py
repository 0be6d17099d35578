"""bergab.init: each scheme's distribution, biases, norms, RNNs, seeding, the global RNG."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bergab.initialization import init


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(300, 200),
        nn.BatchNorm1d(200),
        nn.ReLU(),
        nn.Linear(200, 100),
        nn.LayerNorm(100),
        nn.Linear(100, 10),
    )


def test_xavier_uniform_bound_and_variance() -> None:
    net = init(_net(), "xavier", seed=0)
    for lin in (net[0], net[3], net[5]):
        fan_out, fan_in = lin.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = lin.weight.detach().double()
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.99 * bound
        # U(-a, a) has variance a²/3 = 2 / (fan_in + fan_out)
        assert w.var().item() == pytest.approx(2.0 / (fan_in + fan_out), rel=0.05)
        assert torch.all(lin.bias == 0)


def test_kaiming_normal_std() -> None:
    net = init(_net(), "kaiming", seed=1)
    for lin in (net[0], net[3]):
        fan_in = lin.weight.shape[1]
        w = lin.weight.detach().double()
        assert w.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.03)
        assert abs(w.mean().item()) < 0.01
        assert torch.all(lin.bias == 0)


def test_orthogonal_rows_or_columns() -> None:
    net = init(_net(), "orthogonal", seed=2)
    for lin in (net[0], net[3], net[5]):
        w = lin.weight.detach().double()
        rows, cols = w.shape
        gram = w @ w.T if rows <= cols else w.T @ w
        assert torch.allclose(gram, torch.eye(min(rows, cols), dtype=torch.float64), atol=1e-5)


def test_norm_layers_reset_including_running_stats() -> None:
    net = _net()
    with torch.no_grad():
        net[1].weight.fill_(3.0)
        net[4].bias.fill_(2.0)
    net.train()
    net(torch.randn(32, 300))
    assert net[1].num_batches_tracked.item() == 1
    init(net, "xavier", seed=0)
    assert torch.all(net[1].weight == 1)
    assert torch.all(net[1].bias == 0)
    assert torch.all(net[1].running_mean == 0)
    assert torch.all(net[1].running_var == 1)
    assert net[1].num_batches_tracked.item() == 0
    assert torch.all(net[4].weight == 1)
    assert torch.all(net[4].bias == 0)


def test_default_equals_torch_construction_with_the_same_seed() -> None:
    torch.manual_seed(7)
    reference = _net()
    net = _net()
    rng_before = torch.get_rng_state()
    init(net, "default", seed=7)
    assert torch.equal(torch.get_rng_state(), rng_before)
    for a, b in zip(net.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "orthogonal", "default"])
def test_seed_reproducible_and_global_rng_untouched(scheme: str) -> None:
    nets = [_net() for _ in range(3)]
    before = torch.get_rng_state()
    a = init(nets[0], scheme, seed=11)
    b = init(nets[1], scheme, seed=11)
    c = init(nets[2], scheme, seed=12)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)
    # seed=None draws from the global generator, which then moves
    init(a, scheme)
    assert not torch.equal(torch.get_rng_state(), before)


def test_recurrent_and_conv_and_embedding() -> None:
    model = nn.ModuleDict(
        {
            "gru": nn.GRU(8, 16, num_layers=2),
            "lstm": nn.LSTM(8, 6, proj_size=4),
            "conv": nn.Conv2d(3, 5, 3),
            "emb": nn.Embedding(10, 4),
        }
    )
    init(model, "xavier", seed=0)
    gru = model["gru"]
    for layer in range(2):
        w_hh = getattr(gru, f"weight_hh_l{layer}").detach()
        for gate in w_hh.split(16, dim=0):  # each gate's recurrent matrix is orthogonal
            assert torch.allclose(gate @ gate.T, torch.eye(16), atol=1e-5)
        w_ih = getattr(gru, f"weight_ih_l{layer}").detach()
        fan_in = w_ih.shape[1]
        for gate in w_ih.split(16, dim=0):
            assert gate.abs().max() <= math.sqrt(6.0 / (fan_in + 16))
        assert torch.all(getattr(gru, f"bias_ih_l{layer}") == 0)
    lstm = model["lstm"]
    assert lstm.weight_hr_l0.shape == (4, 6)
    assert lstm.weight_hr_l0.abs().max() <= math.sqrt(6.0 / 10)
    conv = model["conv"]
    fan_in, fan_out = 3 * 9, 5 * 9
    assert conv.weight.abs().max() <= math.sqrt(6.0 / (fan_in + fan_out))
    assert torch.all(conv.bias == 0)
    assert model["emb"].weight.std().item() == pytest.approx(1.0, abs=0.4)  # torch's N(0, 1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scheme must be one of"):
        init(nn.Linear(2, 2), "glorot")
    with pytest.raises(TypeError, match="model must be"):
        init("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        init(nn.Linear(2, 2), seed=-3)
