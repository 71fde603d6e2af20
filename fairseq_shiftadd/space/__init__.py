"""The typed, serialisable NLP search space of ShiftAddNAS (arXiv 2205.08119, docs/method.md sections 2 and 4).

One job per module; the public names are re-exported here, so ``from fairseq_shiftadd.space import X`` works:

* :mod:`.serialise`: the typed-dataclass machinery (checks, plain data, JSON, YAML, files, ``sha256``);
* :mod:`.configs`: :class:`LayerConfig`, :class:`SubnetConfig`, :class:`SearchSpace` (its rules, and the block
  details' one owner: :meth:`SearchSpace.attention_qkv_dim`, :meth:`SearchSpace.kernel_heads`);
* :mod:`.spaces`: the shipped spaces (:data:`SPACES`, :func:`get_space`);
* :mod:`.restrict`: sub-spaces (:func:`parse_restriction`, :func:`restrict`);
* :mod:`.genes`: the gene tables and :func:`check`;
* :mod:`.sampling`: :func:`sample`, :func:`largest`, :func:`smallest`, :func:`sample_operators`, :func:`mutate`,
  :func:`crossover`, :func:`subnet_seed`;
* :mod:`.resolve`: the one subnet-spec grammar (:func:`parse_spec`, :func:`resolve_spec`; for translation subnets
  :func:`parse_subnet_spec`, :func:`resolve_subnet`; the vision CLIs use it too);
* :mod:`.subnet_file`: the comment header of subnet files (:func:`header_line`, :func:`read_header`) and its record
  of the space a subnet was searched in (:class:`SpaceRecord`, :func:`read_space_record`);
* :mod:`.features`: :func:`predictor_features`, the latency predictor's inputs.

The package needs no fairseq and no torch.
"""
from .configs import (
    BLOCK_DETAIL_OVERRIDES,
    BLOCK_DETAILS,
    ORIGINAL_KERNEL_HEADS,
    BlockDetails,
    LayerConfig,
    SearchSpace,
    SubnetConfig,
    attended_encoder_layers,
)
from .features import predictor_features
from .genes import check
from .resolve import NAMED_SUBNETS, parse_spec, parse_subnet_spec, resolve_spec, resolve_subnet
from .restrict import RESTRICTABLE, parse_restriction, restrict
from .sampling import OPERATOR_GENES, crossover, largest, mutate, sample, sample_operators, smallest, subnet_seed
from .spaces import SPACES, get_space
from .subnet_file import SpaceRecord, read_space_record

__all__ = [
    "BlockDetails",
    "BLOCK_DETAILS",
    "BLOCK_DETAIL_OVERRIDES",
    "ORIGINAL_KERNEL_HEADS",
    "LayerConfig",
    "SubnetConfig",
    "SearchSpace",
    "SPACES",
    "get_space",
    "RESTRICTABLE",
    "parse_restriction",
    "restrict",
    "attended_encoder_layers",
    "check",
    "sample",
    "largest",
    "smallest",
    "sample_operators",
    "OPERATOR_GENES",
    "NAMED_SUBNETS",
    "parse_spec",
    "parse_subnet_spec",
    "resolve_spec",
    "resolve_subnet",
    "mutate",
    "crossover",
    "subnet_seed",
    "predictor_features",
    "SpaceRecord",
    "read_space_record",
]
