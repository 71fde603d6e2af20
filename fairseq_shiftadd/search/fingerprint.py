"""The settings of ``fairseq-shiftadd-search`` that change a fitness or a metric: its resume fingerprint.

A resumed search must share them (the engine refuses a state written with other settings, naming each
difference). :data:`FINGERPRINT_OPTIONS` is the one list of such command-line options: adding an option to the
fingerprint is adding its ``dest`` there (an option absent from the parser counts as ``None``, so an option
can be listed before it exists). Files are named
by their resolved path and identified by the SHA-256 of their content, streamed once:

* ``--path``: the supernet checkpoint;
* ``data``: the dictionaries and the files of ``--valid-subset`` in each data directory;
* ``--hardware-profile``: the profile's YAML file (shipped ones too);
* ``--latency-predictor``: the predictor file.

A ``measured_latency_ms`` is timed under ``TimingProtocol.for_workload`` of the costed sentence
(:mod:`.metrics`): its lengths and beam are the ``--cost-*`` options fingerprinted here, and its warm-ups, runs
and clock are :class:`~fairseq_shiftadd.latency.TimingProtocol`'s defaults, which no option changes.

Not covered: the device (``--cpu``), ranks and threads (they change a loss only by float rounding), and the
machine a ``measured_latency_ms`` is timed on. This module needs no fairseq.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Union

from .metrics import COST_OPTIONS

__all__ = ["FINGERPRINT_OPTIONS", "file_sha256", "search_settings"]

FINGERPRINT_OPTIONS = (
    # fitness: what is evaluated, on which sentences, how
    "objective", "valid_subset", "max_valid_sentences", "max_valid_steps", "max_tokens", "batch_size",
    # BLEU fitness: decoding (--beam is also the default cost beam)
    "beam", "lenpen", "unkpen", "max_len_a", "max_len_b", "min_len", "no_repeat_ngram_size", "post_process",
    # metrics: workload, accounting, profile, predictor
    *COST_OPTIONS,
)
"""``argparse`` destinations of the options a resumed search must share (besides the search's own
hyperparameters, constraints and space, which the engine fingerprints itself). The cost options are
:data:`~.metrics.COST_OPTIONS` (their owner); the supernet's ``quant_bits`` (the default ``--cost-bits``) is
covered by the checkpoint's content."""

_CHUNK = 1 << 20


def file_sha256(path: Union[str, Path]) -> str:
    """SHA-256 (hex) of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file(path: Union[str, Path]) -> Dict[str, str]:
    return {"file": str(Path(path).resolve()), "sha256": file_sha256(path)}


def _data_files(data: str, subset: str) -> List[Dict[str, str]]:
    """The dictionaries and the ``subset`` files of each ``:``-separated data directory, sorted by path."""
    files = []
    for directory in data.split(":"):
        root = Path(directory)
        files += sorted({*root.glob("dict.*.txt"), *root.glob(f"{subset}.*")})
    return [_file(f) for f in files]


def search_settings(args: argparse.Namespace, profile_file: Union[str, Path]) -> Dict[str, Any]:
    """The resume fingerprint's settings of a parsed command line.

    Args:
        args: the parsed options (``data``, ``path`` and every :data:`FINGERPRINT_OPTIONS` one that exists).
        profile_file: the YAML file the hardware profile was read from.
    """
    settings: Dict[str, Any] = {name: getattr(args, name, None) for name in FINGERPRINT_OPTIONS}
    subset = args.valid_subset.split(",")[0]
    settings["valid_subset"] = subset
    settings["path"] = _file(args.path)
    settings["data"] = _data_files(args.data, subset)
    settings["hardware_profile"] = {"name": args.hardware_profile, **_file(profile_file)}
    if args.latency_predictor is not None:
        settings["latency_predictor"] = _file(args.latency_predictor)
    return settings
