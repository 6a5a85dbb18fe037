"""The standard Inception FID path (torch-fidelity), on randomly initialised Inception weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from ganserve.training.inception import inception_fid, load_inception  # noqa: E402


def _needs_torch_fidelity():
    try:
        import torch_fidelity.feature_extractor_inceptionv3  # noqa: F401
    except (ImportError, RuntimeError, OSError) as e:  # RuntimeError: a torchvision built for another torch
        pytest.skip(f"needs a working torch-fidelity (and torchvision): {str(e).splitlines()[0]}")


def _random_inception_weights(path):
    """A state dict with torch-fidelity's InceptionV3 keys and shapes, randomly initialised."""
    _needs_torch_fidelity()
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
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    bad = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(ValueError) as caught:  # ganserve's reason, not torch's advice to load it unsafely
        load_inception(bad)
    assert str(caught.value) == (f"{bad}: refused: it holds pickled objects other than tensors and plain "
                                 f"containers (print); ganserve never executes code from a file")


def test_missing_or_wrong_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="Inception weights not found"):
        load_inception(tmp_path / "nothing.pt")
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        load_inception(listed)


class _BrokenImport:
    """A meta-path finder that fails as a torchvision built for another torch does, on import."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch_fidelity":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.mark.parametrize("failure", ["missing", "broken"])
def test_torch_fidelity_that_does_not_import_gives_a_hint(tmp_path, monkeypatch, failure):
    import sys

    weights = tmp_path / "w.pt"
    torch.save({"x": torch.zeros(1)}, weights)
    for name in [m for m in sys.modules if m.split(".")[0] == "torch_fidelity"]:
        monkeypatch.delitem(sys.modules, name)
    if failure == "missing":
        monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import raises ImportError
        message = "needs torch-fidelity"
    else:
        monkeypatch.setattr(sys, "meta_path", [_BrokenImport(), *sys.meta_path])
        message = "torchvision does not match torch"
    with pytest.raises(ImportError, match=message):
        load_inception(weights)


def test_eval_command_adds_the_inception_fid(tmp_path, capsys, tiny_model_dir):
    import json

    from ganserve.cli import main

    pytest.importorskip("sklearn")  # the digits data
    weights = _random_inception_weights(tmp_path / "inception.pt")
    code = main(["eval", str(tiny_model_dir), "--data", "digits", "--samples", "20", "--backend", "numpy",
                 "--inception-weights", str(weights), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    fid = json.loads(out)["model"]["inception_fid"]
    assert np.isfinite(fid) and fid > 0
