"""The search space (being split into modules; this commit only moves space.py so its history follows)."""
from .configs import *  # noqa: F401,F403
from .configs import __all__  # noqa: F401
