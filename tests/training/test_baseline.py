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
