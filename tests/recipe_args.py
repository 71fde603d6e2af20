"""The recipes' tools for the tests: ``args_flags`` reads a stage's .args file with the recipes' own parser
(``examples/args.sh``, not a copy), ``args_to_yaml`` is ``examples/args_to_yaml.py``."""
import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

_spec = importlib.util.spec_from_file_location("args_to_yaml", EXAMPLES / "args_to_yaml.py")
args_to_yaml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(args_to_yaml)

args_flags = args_to_yaml.args_flags
