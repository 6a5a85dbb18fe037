"""Imports every command module so that each registers its commands on the app."""

from . import runtime  # noqa: F401
from . import train  # noqa: F401
from . import export  # noqa: F401
from . import latent  # noqa: F401
from . import generate  # noqa: F401
