"""Latents depend only on (seed, index): the same for any n, start, batch size or shard."""

from __future__ import annotations

import numpy as np
import pytest

from ganserve.latents import make_latents, max_index


def test_standard_normal_float32():
    z = make_latents(4000, 100, seed=3)
    assert z.dtype == np.float32 and z.shape == (4000, 100)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(((z ** 4).mean()) - 3) < 0.05  # Gaussian kurtosis


@pytest.mark.parametrize("dim", [1, 7, 100, 128])
def test_row_depends_only_on_seed_and_index(dim):
    full = make_latents(50, dim, seed=11)
    for start, n in [(0, 1), (13, 5), (49, 1), (20, 30)]:
        np.testing.assert_array_equal(make_latents(n, dim, seed=11, start=start), full[start:start + n])


def test_seeds_differ_and_repeat():
    assert not np.array_equal(make_latents(3, 10, seed=1), make_latents(3, 10, seed=2))
    np.testing.assert_array_equal(make_latents(3, 10, seed=2**64 - 1), make_latents(3, 10, seed=2**64 - 1))


def test_known_values_are_stable_across_versions():
    # Philox's raw stream and the Box-Muller transform are fixed: images made today must be
    # reproducible by any later ganserve, so these values must never change.
    np.testing.assert_allclose(make_latents(2, 3, seed=0), [
        [0.00808869581669569, 0.1521921306848526, -0.4468097388744354],
        [-0.20389847457408905, 1.1637271642684937, 2.411020517349243]], rtol=1e-6)
    np.testing.assert_allclose(make_latents(1, 3, seed=123456789, start=10**9),
                               [[0.7308849692344666, -0.4482223689556122, -0.37998130917549133]], rtol=1e-6)


def test_truncation_bounds_and_determinism():
    z = make_latents(300, 20, seed=4, truncation=0.5)
    assert np.abs(z).max() <= 0.5
    np.testing.assert_array_equal(make_latents(10, 20, seed=4, start=100, truncation=0.5), z[100:110])
    loose = make_latents(300, 20, seed=4, truncation=10.0)
    np.testing.assert_array_equal(loose, make_latents(300, 20, seed=4))  # nothing to redraw


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(n=-1), ValueError, "n must be at least 0, got -1"),
    (dict(n=2.5), TypeError, "n must be an int"),
    (dict(seed=-1), ValueError, "seed must be at least 0"),
    (dict(seed=2**64), ValueError, r"seed must be in \[0, 18446744073709551615\], got 18446744073709551616"),
    (dict(seed="1"), TypeError, "seed must be an int"),
    (dict(seed=True), TypeError, "seed must be an int"),
    (dict(start=-5), ValueError, "start must be at least 0"),
    (dict(truncation=0), ValueError, "truncation must be a positive"),
    (dict(truncation="x"), TypeError, "truncation must be a number"),
])
def test_bad_arguments(kwargs, error, message):
    args = dict(n=2, dim=4, seed=0)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        make_latents(**args)


@pytest.mark.parametrize("dim,end", [(1, 2**63), (4, 2**63), (100, 737869762948382065), (512, 2**57)])
def test_the_last_indices(dim, end):
    assert max_index(dim) == end  # row i's Philox counter, i * ceil(dim / 4), fits in 64 bits
    z = make_latents(2, dim, seed=3, start=end - 2)
    assert np.isfinite(z).all() and not np.array_equal(z[0], z[1])
    with pytest.raises(ValueError, match=f"start \\+ n must be at most {end} for latent size {dim}"):
        make_latents(2, dim, seed=3, start=end - 1)
