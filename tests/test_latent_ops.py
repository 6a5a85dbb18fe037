"""Latent-space tools: slerp/lerp, walks, arithmetic, truncation, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from ganserve import Generator
from ganserve.latent_ops import (arithmetic, interpolation_latents, lerp, mean_latent, resolve_latent, slerp,
                                 walk_latents)
from ganserve.latents import make_latents

DIM = 100


@pytest.fixture(scope="module")
def shipped():
    return Generator.load(backend="numpy")


@pytest.fixture
def pair():
    """Two Gaussian latents scaled to the same norm."""
    a, b = make_latents(2, DIM, seed=7)
    return a, b * np.float32(np.linalg.norm(a) / np.linalg.norm(b))


# --- slerp and lerp


def test_slerp_keeps_norm_and_hits_both_ends_exactly(pair):
    a, b = pair
    z = slerp(a, b, np.linspace(0, 1, 11))
    assert z.shape == (11, DIM) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), np.linalg.norm(a), rtol=1e-5)
    np.testing.assert_array_equal(z[0], a)
    np.testing.assert_array_equal(z[-1], b)
    np.testing.assert_array_equal(slerp(a, b, 0.0), a)
    np.testing.assert_array_equal(slerp(a, b, 1.0), b)


def test_slerp_leaves_the_straight_line(pair):
    a, b = pair
    mid_s, mid_l = slerp(a, b, 0.5), lerp(a, b, 0.5)
    assert np.linalg.norm(mid_l) < 0.9 * np.linalg.norm(a)  # lerp cuts through the sphere, slerp stays on it
    np.testing.assert_allclose(np.linalg.norm(mid_s), np.linalg.norm(a), rtol=1e-5)
    np.testing.assert_allclose(mid_s / np.linalg.norm(mid_s), mid_l / np.linalg.norm(mid_l), rtol=1e-4, atol=1e-6)


def test_slerp_moves_at_a_constant_angle(pair):
    """The point at t lies at t times the angle between a and b, from a (a normalised lerp does not)."""
    a, b = pair

    def angle(u, v):
        return np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))

    omega = angle(a, b)
    for t in (0.1, 0.25, 0.75):
        np.testing.assert_allclose(angle(a, slerp(a, b, t)), t * omega, rtol=1e-4)


def test_lerp_ends_and_midpoint(pair):
    a, b = pair
    z = lerp(a, b, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(z[0], a)
    np.testing.assert_allclose(z[1], (a + b) / 2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z[2], b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [2.0, -1.0, 0.0])
def test_slerp_falls_back_to_lerp_for_parallel_vectors(pair, scale):
    a = pair[0]
    b = a * np.float32(scale)
    z = slerp(a, b, np.linspace(0, 1, 5))
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z, lerp(a, b, np.linspace(0, 1, 5)), rtol=1e-6, atol=1e-6)


def test_batched_interpolation_shapes():
    a, b = make_latents(3, DIM, seed=1), make_latents(3, DIM, seed=2)
    assert slerp(a, b, 0.25).shape == (3, DIM)
    assert slerp(a, b, np.array([0.0, 0.5, 1.0, 0.2])).shape == (4, 3, DIM)
    for i in range(3):
        np.testing.assert_allclose(slerp(a, b, 0.25)[i], slerp(a[i], b[i], 0.25), rtol=1e-6)


# --- interpolation and walks


def test_interpolation_latents_from_seed_index_pairs():
    z = interpolation_latents((3, 5), (4, 0), 8, dim=DIM)
    assert z.shape == (8, DIM) and z.dtype == np.float32
    np.testing.assert_array_equal(z[0], make_latents(1, DIM, seed=3, start=5)[0])
    np.testing.assert_array_equal(z[-1], make_latents(1, DIM, seed=4, start=0)[0])


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("keys,steps", [(2, 2), (2, 16), (3, 16), (5, 4)])
def test_walk_frame_count_and_keyframes(keys, steps, loop):
    keyframes = make_latents(keys, DIM, seed=11)
    z = walk_latents(keyframes, steps, loop=loop)
    assert len(z) == (keys * (steps - 1) if loop else (keys - 1) * (steps - 1) + 1)
    for k in range(keys):  # each keyframe appears exactly where its segment starts
        np.testing.assert_array_equal(z[k * (steps - 1)], keyframes[k])
    assert not any(np.array_equal(z[i], z[i + 1]) for i in range(len(z) - 1))  # no duplicated joins
    if loop:  # the next frame after the last one would be the first again
        assert not np.array_equal(z[-1], keyframes[0])


def test_walk_of_two_keyframes_is_an_interpolation():
    np.testing.assert_array_equal(walk_latents([(1, 0), (2, 0)], 9, "lerp", dim=DIM),
                                  interpolation_latents((1, 0), (2, 0), 9, "lerp", dim=DIM))


def test_walk_is_continuous_in_pixels(shipped):
    frames = shipped.walk([(seed, 0) for seed in range(1, 5)], steps_per_segment=16).astype(np.float32)
    assert frames.shape == (46, *shipped.image_shape)
    step_change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # (45,)
    samples = shipped.sample(64, seed=99).astype(np.float32)
    random_change = np.abs(samples[:32] - samples[32:]).mean()
    assert step_change.mean() < 0.2 * random_change
    assert step_change.max() < 0.5 * random_change


def test_generator_interpolate_matches_render(shipped):
    a = make_latents(1, DIM, seed=5)[0]
    images = shipped.interpolate(a, (6, 2), steps=4, method="lerp")
    assert images.shape == (4, *shipped.image_shape) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], shipped.render(a[None])[0])
    np.testing.assert_array_equal(images[-1], shipped.sample(1, seed=6, start=2)[0])


# --- truncation (Generator.sample / make_latents)


@pytest.mark.parametrize("psi", [0.5, 1.0, 2.0])
def test_truncation_keeps_per_index_determinism_and_bounds(shipped, psi):
    z = make_latents(20, DIM, seed=3, truncation=psi)
    assert np.abs(z).max() <= psi
    for i in (0, 7, 19):
        np.testing.assert_array_equal(z[i], make_latents(1, DIM, seed=3, start=i, truncation=psi)[0])
    images = shipped.sample(12, seed=3, truncation=psi)
    for i in (0, 5, 11):
        np.testing.assert_array_equal(images[i], shipped.sample(1, seed=3, start=i, truncation=psi)[0])


def test_truncated_pairs_in_a_walk():
    z = walk_latents([(1, 0), (2, 0)], 5, dim=DIM, truncation=0.5)
    np.testing.assert_array_equal(z[0], make_latents(1, DIM, seed=1, truncation=0.5)[0])


# --- arithmetic


def test_arithmetic_combines_means():
    a, b, c = [(0, 3), (0, 7), (0, 12)], [(0, 5), (0, 9)], [(0, 1), (0, 4)]
    found = arithmetic([(1, a), (-1, b), (1, c)], dim=DIM, neighbors=4, jitter=0.25)
    means = [mean_latent(g, dim=DIM) for g in (a, b, c)]
    np.testing.assert_allclose(found.result, means[0] - means[1] + means[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(found.means, np.stack(means))
    assert found.weights == (1.0, -1.0, 1.0)
    noise = (found.neighbors - found.result) / 0.25
    np.testing.assert_allclose(noise, make_latents(4, DIM, seed=0), rtol=1e-4, atol=1e-4)
    assert found.stacked().shape == (3 + 1 + 4, DIM)


def test_arithmetic_is_reproducible(shipped):
    terms = [(1, [(0, 3), (0, 7)]), (-1, [(0, 5)]), (1, [(0, 1)])]
    first = shipped.arithmetic(terms, neighbors=6, jitter_seed=2)
    np.testing.assert_array_equal(first, shipped.arithmetic(terms, neighbors=6, jitter_seed=2))
    assert first.shape == (3 + 1 + 6, *shipped.image_shape)
    fewer = shipped.arithmetic(terms, neighbors=3, jitter_seed=2)  # neighbour i depends on i alone
    np.testing.assert_array_equal(fewer, first[:len(fewer)])
    assert not np.array_equal(first, shipped.arithmetic(terms, neighbors=6, jitter_seed=3))


def test_mean_latent_accepts_arrays_and_pairs():
    z = make_latents(3, DIM, seed=4)
    expected = z.astype(np.float64).mean(axis=0).astype(np.float32)
    np.testing.assert_array_equal(mean_latent(z), expected)
    np.testing.assert_array_equal(mean_latent([(4, 0), (4, 1), (4, 2)], dim=DIM), expected)
    np.testing.assert_array_equal(mean_latent([z[0], (4, 1), z[2]], dim=DIM), expected)


# --- bad input


A = make_latents(1, DIM, seed=0)[0]
B = make_latents(1, DIM, seed=1)[0]
NAN = np.full(DIM, np.nan, np.float32)


@pytest.mark.parametrize("call,error,match", [
    (lambda: interpolation_latents(A, B, 1), ValueError, "steps must be at least 2, got 1"),
    (lambda: interpolation_latents(A, B, 2.5), TypeError, "steps must be an int"),
    (lambda: interpolation_latents(A, np.ones(99), 4), ValueError, r"b must have shape \(100,\), got \(99,\)"),
    (lambda: interpolation_latents((0, 1), (0, 2), 4, dim=DIM, method="cubic"), ValueError,
     "method must be one of slerp, lerp, got 'cubic'"),
    (lambda: interpolation_latents((0, 1), (0, 2), 4), ValueError, r"a \(0, 1\) is a \(seed, index\) pair; pass dim"),
    (lambda: interpolation_latents(NAN, B, 4), ValueError, "a contains NaN or Inf"),
    (lambda: interpolation_latents(A, "latent", 4), TypeError, "b must be a .seed, index. pair or an array"),
    (lambda: interpolation_latents((0, -1), (0, 2), 4, dim=DIM), ValueError, "a index must be at least 0, got -1"),
    (lambda: walk_latents([(0, 1)], 4, dim=DIM), ValueError, "a walk needs at least 2 keyframes, got 1"),
    (lambda: walk_latents([A, B], 1), ValueError, "steps_per_segment must be at least 2, got 1"),
    (lambda: walk_latents([A, B[:50]], 4), ValueError, r"keyframe 1 must have shape \(100,\), got \(50,\)"),
    (lambda: walk_latents([A, B], 4, loop="yes"), TypeError, "loop must be a bool"),
    (lambda: mean_latent([], dim=DIM), ValueError, "the list is empty"),
    (lambda: mean_latent([A, NAN]), ValueError, "latent 1 contains NaN or Inf"),
    (lambda: arithmetic([], dim=DIM), ValueError, "arithmetic needs at least one"),
    (lambda: arithmetic([(1, [])], dim=DIM), ValueError, "the list is empty"),
    (lambda: arithmetic([(1, [A]), (-1, [B[:10]])]), ValueError, r"latent 0 must have shape \(100,\), got \(10,\)"),
    (lambda: arithmetic([(float("nan"), [A])]), ValueError, "weight of term 0 must be finite"),
    (lambda: arithmetic([(1, [A])], jitter=-0.1), ValueError, "jitter must be >= 0, got -0.1"),
    (lambda: arithmetic([(1, [A])], neighbors=-1), ValueError, "neighbors must be at least 0, got -1"),
    (lambda: arithmetic([[A]]), TypeError, r"term 0 must be a \(weight, latents\) pair"),
    (lambda: slerp(A, B, np.nan), ValueError, "t contains NaN or Inf"),
    (lambda: slerp(A, B[:10], 0.5), ValueError, "a and b must have the same latent size"),
    (lambda: lerp(A, B, np.zeros((2, 2))), ValueError, "t must have 0 or 1 dimensions"),
    (lambda: resolve_latent(A, dim=0), ValueError, "dim must be at least 1, got 0"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_generator_checks_latent_size(shipped):
    with pytest.raises(ValueError, match=r"a must have shape \(100,\), got \(16,\)"):
        shipped.interpolate(np.zeros(16), (0, 1))
    with pytest.raises(ValueError, match="steps must be at least 2"):
        shipped.interpolate((0, 0), (0, 1), steps=1)
    with pytest.raises(ValueError, match="truncation must be a positive finite number"):
        shipped.walk([(0, 0), (1, 0)], truncation=0.0)
