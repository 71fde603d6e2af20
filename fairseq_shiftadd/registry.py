"""Every fairseq registration of the plugin, as tables (tests iterate over them)."""
from . import compat

compat.install()

TASKS: dict = {}
MODELS: dict = {}
ARCHS: dict = {}
CRITERIONS: dict = {}
