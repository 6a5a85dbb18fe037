"""Imports every command module so that each registers its commands on the app."""

from . import (
    export,  # noqa: F401
    generate,  # noqa: F401
    latent,  # noqa: F401
    runtime,  # noqa: F401
    train,  # noqa: F401
)
