"""The quality metric: Frechet distance (FD) and classifier score (CS) in the shipped classifier's
features. The formulas are checked against closed forms; the metric itself on real Fashion-MNIST
(where installed): the real-vs-real floor is small, blur moves away from it, a random generator is far."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ganserve  # noqa: E402
from ganserve.training.data import FASHION_MNIST_DIR, fashion_mnist_labels, load_dataset  # noqa: E402
from ganserve.training.metrics import (  # noqa: E402
    Evaluator,
    Stats,
    classifier_info,
    classifier_score,
    frechet_distance,
    gaussian_blur,
    load_classifier,
    to_classifier_input,
)

needs_fashion_mnist = pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                         reason="dataset-fashion-mnist is not installed")


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_of_diagonal_gaussians_in_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    var_a, var_b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    a, b = Stats(mu_a, np.diag(var_a)), Stats(mu_b, np.diag(var_b))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # The same pair seen in rotated coordinates: the distance does not depend on the basis.
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    rotated = [Stats(q @ s.mu, q @ s.sigma @ q.T) for s in (a, b)]
    assert frechet_distance(*rotated) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_non_commuting_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 12
    a = Stats(rng.normal(size=d), _random_spd(rng, d))
    b = Stats(rng.normal(size=d), _random_spd(rng, d))
    cross = np.trace(scipy_linalg.sqrtm(a.sigma @ b.sigma)).real
    expected = ((a.mu - b.mu) ** 2).sum() + np.trace(a.sigma) + np.trace(b.sigma) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-7)
    assert abs(frechet_distance(a, a)) < 1e-9


def test_frechet_distance_needs_two_images_a_side():
    with pytest.raises(ValueError, match="FD needs at least 2 images on each side"):
        Stats.of(np.zeros((1, 128)))


def test_classifier_score_bounds():
    eye = np.eye(10)
    assert classifier_score(np.repeat(eye, 5, axis=0)) == pytest.approx(10)  # sure and balanced: the maximum
    assert classifier_score(np.repeat(eye[:1], 50, axis=0)) == pytest.approx(1)  # one class only
    assert classifier_score(np.full((50, 10), 0.1)) == pytest.approx(1)  # never sure


def test_gaussian_blur():
    flat = np.full((2, 9, 9, 1), 77, np.uint8)
    np.testing.assert_array_equal(gaussian_blur(flat, 1.0), flat)
    dot = np.zeros((1, 15, 15, 3), np.uint8)
    dot[0, 7, 7] = 255
    half, one = gaussian_blur(dot, 0.5), gaussian_blur(dot, 1.0)
    assert half.shape == dot.shape and half.dtype == np.uint8
    assert 255 > half[0, 7, 7, 0] > one[0, 7, 7, 0] > 0  # a wider blur spreads the dot further
    np.testing.assert_array_equal(one[0], one[0, ::-1])  # and symmetrically
    np.testing.assert_array_equal(one[0], one[0, :, ::-1])
    assert abs(int(one.sum(dtype=np.int64)) // 3 - 255) < 10  # about the same light, up to rounding


def test_classifier_input():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    x = to_classifier_input(gray)
    assert x.shape == (3, 1, 28, 28) and -1 <= float(x.min()) and float(x.max()) <= 1
    rgb = to_classifier_input(np.repeat(gray, 3, axis=3))  # equal channels: the same gray image
    np.testing.assert_allclose(rgb.numpy(), x.numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="must be uint8"):
        to_classifier_input(gray.astype(np.float32))


@needs_fashion_mnist
def test_shipped_classifier_has_its_recorded_test_accuracy():
    from ganserve.training.classifier import accuracy

    x = load_dataset("fashion-mnist-test").to_tensor((1, 28, 28))
    y = torch.from_numpy(fashion_mnist_labels("test").astype(np.int64))
    assert accuracy(load_classifier(), x, y) == pytest.approx(classifier_info()["test_accuracy"], abs=1e-3)


@pytest.fixture(scope="module")
def scores():
    """FD and CS on 2,000 images each, against 2,000 training images."""
    from ganserve.training.evaluate import reference_images
    from helpers import random_weights

    n = 2000
    evaluator = Evaluator(reference_images("fashion-mnist", (1, 28, 28), n))
    test = load_dataset("fashion-mnist-test", limit=n).images
    config = ganserve.create_config("dcgan28")
    untrained = ganserve.Generator.from_weights(config, random_weights(config, seed=0), backend="numpy")
    return {
        "floor": evaluator.score(test),
        "blur 0.5": evaluator.score(gaussian_blur(test, 0.5)),
        "blur 1": evaluator.score(gaussian_blur(test, 1.0)),
        "random": evaluator.score(untrained.sample(n)),
        "shipped": evaluator.score(ganserve.Generator.load(backend="numpy").sample(n)),
    }


@needs_fashion_mnist
def test_the_floor_is_small_and_a_random_generator_is_far(scores):
    fd = {name: s["fd"] for name, s in scores.items()}
    assert fd["floor"] < 0.5
    assert fd["floor"] < fd["blur 0.5"] < fd["blur 1"] < fd["random"]
    assert fd["random"] > 50
    assert scores["floor"]["cs"] > 7.5 > scores["blur 1"]["cs"] > scores["random"]["cs"]


@needs_fashion_mnist
def test_the_shipped_model_is_closer_to_the_data_than_the_1px_blur(scores):
    assert scores["shipped"]["fd"] < scores["blur 1"]["fd"]
    assert scores["shipped"]["cs"] > scores["blur 1"]["cs"]


def test_reference_images_of_a_folder_are_read_as_training_reads_them(tmp_path):
    """A folder's images are resized as they are read (never held at full size), as the training loop reads them."""
    from PIL import Image

    from ganserve.images import to_uint8
    from ganserve.training.data import load_dataset
    from ganserve.training.evaluate import reference_images

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    training = to_uint8(load_dataset(str(tmp_path), size=(28, 28)).to_tensor((3, 28, 28)).numpy())
    assert np.array_equal(reference_images(str(tmp_path), (3, 28, 28), 1), training)


@pytest.mark.parametrize("size, model_size", [((28, 28), (32, 32)), ((20, 24), (32, 28)), ((8, 8), (32, 32))])
def test_undo_resize_brings_images_the_loader_resized_back(size, model_size):
    """A 32x32 model's samples are scored against the real 28x28 images by inverting the loader's
    resize exactly: noise (the hardest case) resized up, rounded to uint8 and brought back is itself
    up to rounding, where resizing back with the metric's own resize is far off."""
    import torch.nn.functional as F

    from ganserve.images import to_uint8
    from ganserve.training.data import to_training_tensor
    from ganserve.training.evaluate import undo_resize

    x = np.random.default_rng(0).integers(0, 256, (50, *size, 1), dtype=np.uint8)
    up = to_uint8(to_training_tensor(x, (1, *model_size)).numpy())
    back = undo_resize(up, size)
    error = np.abs(back.astype(int) - x.astype(int))
    assert back.shape == x.shape and back.dtype == np.uint8 and error.max() <= 3 and error.mean() < 0.5
    resized = to_uint8(F.interpolate(torch.from_numpy(up).permute(0, 3, 1, 2).float() / 127.5 - 1, size=size,
                                     mode="bilinear", antialias=True).clamp(-1, 1).numpy())
    assert np.abs(resized.astype(int) - x.astype(int)).mean() > 30


def test_undo_resize_leaves_the_data_size_alone_and_refuses_to_go_up(tmp_path):
    from PIL import Image

    from ganserve.training.evaluate import data_size, undo_resize

    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    assert undo_resize(x, (28, 28)) is x
    with pytest.raises(ValueError, match="cannot undo a resize from 32x32 down to 28x28"):
        undo_resize(x, (32, 32))
    assert data_size("digits") == (8, 8)
    np.savez(tmp_path / "a.npz", images=x[:, :20, :24])
    assert data_size(str(tmp_path / "a.npz")) == (20, 24)
    Image.fromarray(x[0, :, :, 0]).save(tmp_path / "0.png")
    assert data_size(str(tmp_path)) is None  # Pillow resizes image files as they are read: no inverse here
