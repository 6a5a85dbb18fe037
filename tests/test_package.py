"""The package namespace: public names load on first use, unknown ones fail as usual."""

from __future__ import annotations

import pytest

import ganserve


def test_every_public_name_resolves():
    for name in ganserve.__all__:
        assert getattr(ganserve, name).__name__ == name
    names = dir(ganserve)
    assert len(names) == len(set(names)) and "Generator" in names


def test_submodules_and_unknown_names():
    assert ganserve.latents.make_latents is not None  # a submodule by attribute, as after `import ganserve.latents`
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        ganserve.nonexistent  # noqa: B018
    with pytest.raises(ImportError):
        from ganserve import nonexistent  # noqa: F401
