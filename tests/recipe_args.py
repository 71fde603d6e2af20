"""The flags of a recipe's .args file, read by the recipes' own parser (``examples/args.sh``), not a copy."""
import subprocess
from pathlib import Path
from typing import List

ARGS_SH = Path(__file__).resolve().parents[1] / "examples" / "args.sh"


def args_flags(path: Path) -> List[str]:
    """``args_flags FILE`` of ``examples/args.sh``: the words of the file, one per flag or value."""
    out = subprocess.run(["bash", "-c", f'source "{ARGS_SH}" && args_flags "$0"', str(path)],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()
