"""fairseq's incremental decoding state, as the translation modules read and write it."""
from __future__ import annotations

from typing import Dict, Optional

from torch import Tensor

__all__ = ["IncrementalState"]

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]
"""``{"<module uuid>.<key>": {name: tensor}}`` (``@with_incremental_state``); each module owns its entries."""
