"""The standard Inception FID path (torch-fidelity), on randomly initialised Inception weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_fidelity", reason="needs torch-fidelity, which needs torchvision")


def _random_inception_weights(path):
    """A state dict with torch-fidelity's InceptionV3 keys and shapes, randomly initialised."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = path.with_name("empty.pt")
    torch.save({}, empty)
    net = FeatureExtractorInceptionV3.__new__(FeatureExtractorInceptionV3)
    with pytest.raises(RuntimeError):  # builds every layer, then fails to load the empty state dict
        net.__init__("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    torch.manual_seed(0)
    state = {}
    for key, value in net.state_dict().items():
        if value.ndim > 1:  # conv / linear weights: He-scaled, so that activations neither vanish nor explode
            value = torch.randn_like(value) * (2.0 / value[0].numel()) ** 0.5
        elif key.endswith(("running_var", ".weight")):  # batch-norm variance and scale
            value = torch.ones_like(value)
        elif value.is_floating_point():  # means and biases
            value = torch.zeros_like(value)
        state[key] = value
    torch.save(state, path)
    return path


def test_inception_fid_runs_on_local_weights(tmp_path):
    from ganserve.training.inception import inception_fid

    weights = _random_inception_weights(tmp_path / "inception.pt")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    same = inception_fid(a, a, weights)
    different = inception_fid(a, np.clip(b // 4, 0, 255).astype(np.uint8), weights)
    assert np.isfinite(same) and np.isfinite(different)
    assert abs(same) < 1e-3 * different
    assert different > 0


def test_inception_fid_refuses_pickled_code(tmp_path):
    from ganserve.training.inception import load_inception

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    bad = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(ValueError, match="not a PyTorch state dict of plain tensors"):
        load_inception(bad)
