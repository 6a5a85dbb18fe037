"""The seeds' recipe (the yardstick of the README's comparison): its loop runs in both data modes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from ganserve.training.baseline import seed_loop, seed_models, train_mode_samples  # noqa: E402


@pytest.mark.parametrize("fast_data", [False, True])
def test_seed_loop_trains_and_reports_its_last_losses(fast_data):
    torch.manual_seed(0)
    G, D = seed_models("mlp28")
    before = [p.detach().clone() for p in G.parameters()]
    images = torch.rand(20, 1, 28, 28) * 2 - 1
    result = seed_loop(G, D, images, steps=5, batch_size=8, fast_data=fast_data)  # 3 batches per epoch, the last ragged
    assert result["steps"] == 5 and result["images_per_s"] > 0
    assert math.isfinite(result["d_loss"]) and math.isfinite(result["g_loss"])  # fewer steps than the 500 between reads
    assert all(not torch.equal(a, b) for a, b in zip(before, G.parameters()))  # every layer of G learned
    samples = train_mode_samples(G, 5, batch_size=2)  # a batch of one in train mode would fail: 5 = 2 + 2 + 1
    assert samples.shape == (5, 28, 28, 1) and samples.dtype.name == "uint8"


def test_seed_models_initialise_as_the_seed_script():
    """Conv weights N(0, 0.02) and BatchNorm2d N(1, 0.02) / 0, as `weights_init_normal`; linear layers and
    conv biases keep PyTorch's defaults (ganserve's own dcgan_init sets those to N(0, 0.02) and 0)."""
    G, D = seed_models("upconv32", seed=0)
    convs = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.BatchNorm2d)]
    linears = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 7 and len(norms) == 6 and len(linears) == 2
    for conv in convs:
        assert abs(conv.weight.std().item() - 0.02) < 0.003
        assert conv.bias.abs().max().item() > 0.01  # default init, not zeroed
    for norm in norms:
        assert abs(norm.weight.mean().item() - 1) < 0.01 and 0.01 < norm.weight.std().item() < 0.03
        assert not norm.bias.any()
    projection = linears[0]  # Linear(100, 8192): default init is U(-0.1, 0.1), std 0.058
    assert abs(projection.weight.std().item() - 0.1 / 3 ** 0.5) < 0.002


def test_seed_models_depend_on_the_seed_only():
    G0, D0 = seed_models("upconv32", seed=0)
    torch.manual_seed(123)  # the global RNG state before the call does not matter
    G0_again, _ = seed_models("upconv32", seed=0)
    G1, D1 = seed_models("upconv32", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(G0.parameters(), G0_again.parameters()))
    assert not torch.equal(G0.layers[0].weight, G1.layers[0].weight)
    assert not torch.equal(D0[0][0].weight, D1[0][0].weight)
