"""The Generator API: loading, sampling determinism, streaming, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from ganserve import Generator, ModelFormatError
from ganserve.images import to_uint8
from ganserve.latents import make_latents
from ganserve.model_io import save_model


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    return Generator.load(tiny_model_dir, backend="numpy")


def test_properties(gen, tiny_config):
    assert gen.latent_dim == 16
    assert gen.image_shape == (28, 28, 1)
    assert gen.backend == "numpy" and gen.device == "cpu"
    assert gen.config == tiny_config
    assert "numpy" in repr(gen)


def test_sample_shape_and_dtype(gen):
    images = gen.sample(5, seed=3)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28, 1)
    assert images.std() > 0


def test_generate_is_the_raw_forward_pass(gen):
    z = gen.latents(4, seed=1)
    x = gen.generate(z)
    assert x.dtype == np.float32 and x.shape == (4, 1, 28, 28)
    assert -1 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(gen.render(z), to_uint8(x))  # to_uint8's rounding: tests/test_images.py


def test_image_depends_only_on_seed_and_index(gen):
    """Latents are exact; images agree within rounding whatever the batch size or start."""
    full = gen.sample(12, seed=9)
    np.testing.assert_array_equal(gen.sample(12, seed=9), full)  # the same call is bit-identical
    for kwargs in [dict(batch_size=5), dict(batch_size=1)]:
        other = gen.sample(12, seed=9, **kwargs)
        assert np.abs(other.astype(int) - full.astype(int)).max() <= 1
    part = gen.sample(4, seed=9, start=6)
    assert np.abs(part.astype(int) - full[6:10].astype(int)).max() <= 1
    np.testing.assert_array_equal(gen.latents(4, seed=9, start=6), gen.latents(12, seed=9)[6:10])


def test_seeds_give_different_images(gen):
    assert not np.array_equal(gen.sample(2, seed=0), gen.sample(2, seed=1))


def test_iter_batches_streams(gen):
    batches = list(gen.iter_batches(10, seed=2, batch_size=4, start=100))
    assert [first for first, _ in batches] == [100, 104, 108]
    assert [len(b) for _, b in batches] == [4, 4, 2]
    z = make_latents(10, gen.latent_dim, seed=2, start=100)  # images 100..109 of seed 2, made another way
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), gen.render(z, batch_size=4))


def test_from_weights(tmp_path, tiny_config):
    from helpers import random_weights

    gen = Generator.from_weights(tiny_config, random_weights(tiny_config, 1))
    assert gen.sample(1).shape == (1, 28, 28, 1)
    # the hash is the saved model's, and it tells weights apart (`generate` refuses to mix models by it)
    saved = Generator.load(save_model(tmp_path / "m", tiny_config, random_weights(tiny_config, 1)), backend="numpy")
    assert gen.model_hash == saved.model_hash
    assert Generator.from_weights(tiny_config, random_weights(tiny_config, 2)).model_hash != gen.model_hash
    with pytest.raises(ModelFormatError, match="missing"):
        Generator.from_weights(tiny_config, {})


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("backend", ["numpy", "onnxruntime", "torch"])
def test_output_that_overflows_is_an_error_not_images(tiny_config, backend):
    from helpers import random_weights

    pytest.importorskip({"numpy": "numpy", "onnxruntime": "onnxruntime", "torch": "torch"}[backend])
    weights = random_weights(tiny_config, 1)
    last = [k for k, v in weights.items() if v.ndim == 4][-1]
    weights[last][0::2], weights[last][1::2] = 3e38, -3e38  # finite weights; their sums give Inf - Inf = NaN
    gen = Generator.from_weights(tiny_config, weights, backend=backend)
    for make in (lambda: gen.sample(3), lambda: gen.generate(gen.latents(3)),
                 lambda: next(gen.iter_batches(3))):
        with pytest.raises(ValueError, match="output holds NaN or Inf"):
            make()


@pytest.mark.parametrize("n,error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), ("4", TypeError),
                                     (True, TypeError)])
def test_bad_n(gen, n, error):
    with pytest.raises(error, match="n must"):
        gen.sample(n)


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (1.5, TypeError), (None, TypeError), (2**64, ValueError)])
def test_bad_seed(gen, seed, error):
    with pytest.raises(error, match="seed must"):
        gen.sample(1, seed=seed)


def test_bad_batch_size(gen):
    with pytest.raises(ValueError, match="batch_size must"):
        gen.sample(2, batch_size=0)


@pytest.mark.parametrize("z,error,message", [
    (np.zeros((2, 15), np.float32), ValueError, r"shape \(n, 16\)"),
    (np.zeros(16, np.float32), ValueError, r"shape \(n, 16\)"),
    (np.zeros((0, 16), np.float32), ValueError, r"n >= 1"),
    (np.full((1, 16), np.nan, np.float32), ValueError, "NaN or Inf"),
    (np.full((1, 16), np.inf, np.float32), ValueError, "NaN or Inf"),
    (np.array([["a"] * 16]), TypeError, "float array"),
    (np.zeros((1, 16), bool), TypeError, "float array"),
])
def test_bad_latents(gen, z, error, message):
    with pytest.raises(error, match=message):
        gen.generate(z)


def test_latents_as_lists_and_float64(gen):
    z = gen.latents(2).astype(np.float64)
    np.testing.assert_allclose(gen.generate(z.tolist()), gen.generate(z), atol=1e-6)


def test_missing_backend_package_gives_install_hint(tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'ganserve\[torch\]'"):
        Generator.load(tiny_model_dir, backend="torch")


def test_load_errors():
    with pytest.raises(FileNotFoundError):
        Generator.load("/no/such/model")


def test_shipped_model_samples():
    gen = Generator.load(backend="numpy")
    images = gen.sample(8)
    assert images.shape == (8, 28, 28, 1)
    assert 20 < images.mean() < 160  # clothes on a dark background, not a blank or saturated image
