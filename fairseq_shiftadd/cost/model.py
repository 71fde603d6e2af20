"""The hardware cost model of ShiftAddNAS subnets (arXiv 2205.08119): energy, analytical latency, counts.

``CostModel(space, profile, workload).metrics(sub)`` returns the :data:`METRICS` of one subnet; ``report(sub)``
the full breakdown (:class:`CostReport`). What is counted and moved is documented in :mod:`.parts` (under the
workload's accounting, :mod:`.workload`), the energy in :mod:`.energy`, the latency in :mod:`.analytical`.

**Fixed energy** (:meth:`CostModel.fixed_energy_mj`): the part of a subnet's energy that no per-layer gene
can change, at the subnet's size (its encoder and decoder embedding widths and its depths, which scale
everything). Per component of the subnet, the minimum of that component's energy over every value its genes
may take in the space, summed:

* the embedding, the output projection and the layers' post-norms: their whole energy (no per-layer gene
  shapes them);
* a token mixer: the minimum over the side's block types and head counts;
* a decoder layer's encoder-decoder attention: the minimum over cross head counts and spans;
* an FFN: the minimum over the FFN operators and the side's FFN widths.

``fixed_energy_mj / energy_mj`` is the share that the per-layer search (operators, widths, heads, spans)
cannot remove; the rest is what it can trade. Under the streaming accounting the embedding and the output
projection (and each decoder weight streamed at every step) make this share large.

Speed: a subnet's cost is a sum over its layers, and a layer's over its components (token mixer, encoder-
decoder attention, FFN, norms), each of which depends on a handful of genes only. Component summaries are
cached per model, and so are layer summaries, so :meth:`CostModel.metrics` of a fresh subnet sums a dozen
cached tuples (tens of thousands of subnets per second).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..ops.op_counts import OpCounts
from ..ops.kinds import BlockType, OpKind
from ..space import SearchSpace, SubnetConfig, attended_encoder_layers, check
from .analytical import cycles_to_ms, part_cycles
from .parts import (
    LEVELS,
    Part,
    cross_attention_parts,
    decoder_stream,
    embedding_part,
    encoder_stream,
    ffn_parts,
    layer_norms_part,
    output_projection_parts,
    token_mixer_parts,
)
from .energy import ENERGY_COMPONENTS, PJ_PER_MJ, part_energy_pj
from .profile import HardwareProfile, load_profile
from .workload import Workload

__all__ = ["METRICS", "LatencyPredictorLike", "PartCost", "CostReport", "CostModel"]

METRICS: Dict[str, str] = {
    "energy_mj": "energy of one sentence (mJ): operations plus DRAM, global-buffer, NoC and RF traffic",
    "analytical_latency_ms": "latency of one sentence (ms) on the profile's accelerator (roofline per part)",
    "params": "parameters of the standalone subnet, the shared embedding included",
    "mults": "multiplications of one sentence (all bit widths)",
    "adds": "additions and subtractions of one sentence (all bit widths)",
    "shifts": "bit shifts of one sentence (all bit widths)",
    "predicted_latency_ms": "latency (ms) from the latency predictor (only when the CostModel has one)",
}
"""Metric name -> one-line description (what :meth:`CostModel.metrics` returns)."""

_BASE_METRICS = ("energy_mj", "analytical_latency_ms", "params", "mults", "adds", "shifts")

LatencyPredictorLike = Any
"""An object with ``predict(subs: Sequence[SubnetConfig]) -> List[float]`` (ms)."""

# A cached summary: (energy pJ, cycles, params, mults, adds, shifts).
_Summary = Tuple[float, float, float, float, float, float]
# A layer's genes: (decoder, block, heads, ffn_op, ffn_dim, cross_heads, enc_dec_span), enum values as strings.
_Genes = Tuple[Any, ...]
# A layer: (genes, index, dim, encoder_dim); index and dims place the genes in the subnet.
_LayerKey = Tuple[_Genes, int, int, int]
# Component kind -> the positions in _Genes it depends on (see CostModel._component_keys).
_COMPONENT_GENES: Dict[str, Tuple[int, ...]] = {"mixer": (1, 2), "cross": (5, 6), "ffn": (3, 4), "norms": ()}


@dataclass(frozen=True)
class PartCost:
    """One part of a layer, with its energy by component (pJ) and its analytical cycles."""

    part: Part
    energy_pj: Mapping[str, float]
    cycles: float

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())


def _sum_dicts(dicts: Sequence[Mapping[str, float]], keys: Sequence[str]) -> Dict[str, float]:
    return {key: sum(d.get(key, 0.0) for d in dicts) for key in keys}


@dataclass(frozen=True)
class CostReport:
    """The full cost breakdown of one subnet: parts per layer, then totals by op, level, layer and group.

    ``layers`` maps a layer name (``"embedding"``, ``"encoder.0"`` ... ``"decoder.5"``,
    ``"output_projection"`` under the streaming accounting) to its parts. ``fixed_energy_mj`` is
    :meth:`CostModel.fixed_energy_mj` (see the module docstring).
    """

    sub: SubnetConfig
    workload: Workload
    profile: HardwareProfile
    layers: Mapping[str, Tuple[PartCost, ...]]
    fixed_energy_mj: float

    @property
    def fixed_energy_share(self) -> float:
        """``fixed_energy_mj / energy_mj``: the share of the energy no per-layer gene can change."""
        return self.fixed_energy_mj / self.energy_mj

    @property
    def parts(self) -> List[Tuple[str, PartCost]]:
        return [(layer, cost) for layer, costs in self.layers.items() for cost in costs]

    @property
    def ops(self) -> OpCounts:
        return OpCounts.total_of(cost.part.ops for _, cost in self.parts)

    @property
    def params(self) -> int:
        return sum(cost.part.params for _, cost in self.parts)

    @property
    def traffic_bits(self) -> Dict[str, int]:
        """Bits moved at each memory level."""
        return {level: sum(cost.part.traffic_bits.get(level, 0) for _, cost in self.parts) for level in LEVELS}

    @property
    def energy_pj_by_component(self) -> Dict[str, float]:
        """Compute energy by operator (``mult``, ``add``, ``shift``) and data movement by level."""
        return _sum_dicts([cost.energy_pj for _, cost in self.parts], ENERGY_COMPONENTS)

    @property
    def energy_mj_by_layer(self) -> Dict[str, float]:
        return {layer: sum(c.total_energy_pj for c in costs) / PJ_PER_MJ for layer, costs in self.layers.items()}

    @property
    def energy_mj_by_group(self) -> Dict[str, float]:
        """By what the parts belong to: self_attention, lightweight, cross_attention, ffn, norms, ..."""
        out: Dict[str, float] = {}
        for _, cost in self.parts:
            out[cost.part.group] = out.get(cost.part.group, 0.0) + cost.total_energy_pj / PJ_PER_MJ
        return out

    @property
    def energy_mj(self) -> float:
        return sum(self.energy_pj_by_component.values()) / PJ_PER_MJ

    @property
    def latency_ms(self) -> float:
        return cycles_to_ms(sum(cost.cycles for _, cost in self.parts), self.profile.accelerator)

    def metrics(self) -> Dict[str, float]:
        """The base :data:`METRICS` (as :meth:`CostModel.metrics`, without a predictor)."""
        ops = self.ops
        return {
            "energy_mj": self.energy_mj,
            "analytical_latency_ms": self.latency_ms,
            "params": float(self.params),
            "mults": float(ops.count(OpKind.MULT)),
            "adds": float(ops.count(OpKind.ADD)),
            "shifts": float(ops.count(OpKind.SHIFT)),
        }

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly: subnet, workload, profile, metrics, totals and every part."""
        return {
            "subnet": self.sub.to_dict(),
            "workload": dict(vars(self.workload)),
            "profile": self.profile.name,
            "metrics": self.metrics(),
            "fixed_energy_mj": self.fixed_energy_mj,
            "fixed_energy_share": self.fixed_energy_share,
            "ops": self.ops.to_dict(),
            "traffic_bytes": {level: bits / 8 for level, bits in self.traffic_bits.items()},
            "energy_mj_by_component": {k: v / PJ_PER_MJ for k, v in self.energy_pj_by_component.items()},
            "energy_mj_by_layer": self.energy_mj_by_layer,
            "energy_mj_by_group": self.energy_mj_by_group,
            "layers": {
                layer: [
                    {
                        "part": c.part.name,
                        "group": c.part.group,
                        "ops": c.part.ops.to_dict(),
                        "params": c.part.params,
                        "traffic_bytes": {level: bits / 8 for level, bits in c.part.traffic_bits.items()},
                        "energy_mj": c.total_energy_pj / PJ_PER_MJ,
                        "latency_ms": cycles_to_ms(c.cycles, self.profile.accelerator),
                    }
                    for c in costs
                ]
                for layer, costs in self.layers.items()
            },
        }

    def table(self) -> str:
        """A readable summary: one row per layer, then energy by component and the metrics."""
        acc = self.profile.accelerator
        lines = [
            f"profile {self.profile.name}, {self.workload.describe()}",
            f"{'layer':<18}{'mults':>14}{'adds':>14}{'shifts':>14}{'params':>13}{'DRAM MB':>10}{'energy mJ':>11}"
            f"{'lat. ms':>10}",
        ]
        for layer, costs in self.layers.items():
            ops = OpCounts.total_of(c.part.ops for c in costs)
            lines.append(
                f"{layer:<18}{ops.count(OpKind.MULT):>14,}{ops.count(OpKind.ADD):>14,}{ops.count(OpKind.SHIFT):>14,}"
                f"{sum(c.part.params for c in costs):>13,}"
                f"{sum(c.part.traffic_bits.get('dram', 0) for c in costs) / 8e6:>10.2f}"
                f"{sum(c.total_energy_pj for c in costs) / PJ_PER_MJ:>11.3f}"
                f"{cycles_to_ms(sum(c.cycles for c in costs), acc):>10.3f}"
            )
        energy = self.energy_pj_by_component
        lines.append("energy (mJ) by component: " + ", ".join(f"{k} {v / PJ_PER_MJ:.3f}" for k, v in energy.items()))
        lines.append("energy (mJ) by group: " + ", ".join(f"{k} {v:.3f}" for k, v in self.energy_mj_by_group.items()))
        metrics = self.metrics()
        lines.append(
            f"total: energy {metrics['energy_mj']:.3f} mJ, "
            f"analytical latency {metrics['analytical_latency_ms']:.3f} ms, "
            f"params {int(metrics['params']):,}, mults {int(metrics['mults']):,}, adds {int(metrics['adds']):,}, "
            f"shifts {int(metrics['shifts']):,}"
        )
        lines.append(
            f"fixed energy (no per-layer gene can change it at this size): {self.fixed_energy_mj:.3f} mJ = "
            f"{100 * self.fixed_energy_share:.1f} % of the total"
        )
        return "\n".join(lines)


def _check_predictor(predictor: Optional[LatencyPredictorLike]) -> Optional[LatencyPredictorLike]:
    """``predictor`` if it is ``None`` or has ``predict``; ``ValueError`` otherwise, a path among them (the cost
    model is arithmetic and imports no latency code: load a saved one with ``fairseq_shiftadd.latency``)."""
    if predictor is None or hasattr(predictor, "predict"):
        return predictor
    raise ValueError(
        f"latency_predictor must be None or an object with .predict(subs) (a saved file: pass "
        f"fairseq_shiftadd.latency.LatencyPredictor.load(path, space)), got {predictor!r}"
    )


class CostModel:
    """Energy, analytical latency, parameters and operation counts of subnets of ``space``.

    Args:
        space: the search space (its ``qkv_dim`` and ``kernel_sizes`` shape the layers).
        profile: a shipped profile name (:func:`~.profile.shipped_profiles`), a YAML path or a
            :class:`~.profile.HardwareProfile`.
        workload: what one costed inference is (default :class:`~.workload.Workload()`: 30 + 30 tokens,
            beam 1, 32-bit, 32000 words, streaming accounting).
        latency_predictor: ``None`` or an object with ``predict(subs) -> List[float]`` (ms), e.g. a
            :class:`fairseq_shiftadd.latency.LatencyPredictor`; adds ``"predicted_latency_ms"`` to the metrics.

    Raises:
        ValueError: the profile has no unit energies at ``workload.bits``, or an invalid profile/predictor.
    """

    def __init__(
        self,
        space: SearchSpace,
        profile: Union[str, Path, HardwareProfile] = "45nm",
        workload: Optional[Workload] = None,
        latency_predictor: Optional[LatencyPredictorLike] = None,
    ) -> None:
        self.space = space
        self.profile = load_profile(profile)
        self.workload = Workload() if workload is None else workload
        self.profile.check_bits(self.workload.bits)
        self.latency_predictor = _check_predictor(latency_predictor)
        self._components: Dict[Tuple[Any, ...], Tuple[Tuple[PartCost, ...], _Summary]] = {}
        self._layers: Dict[Tuple[Any, ...], _Summary] = {}
        self._fixed_layers: Dict[Tuple[Any, ...], float] = {}
        self._checked: Set[Tuple[Any, ...]] = set()  # genes validated against the space (see _check)

    # -- caches ----------------------------------------------------------------------------------
    # Keys are tuples of plain ints and strings (enum values): hashing frozen dataclasses and enums runs
    # Python code, hashing these does not.

    def _component_keys(self, layer_key: _LayerKey) -> List[Tuple[Any, ...]]:
        """The components of a layer: token mixer, [encoder-decoder attention], FFN, norms."""
        (decoder, block, heads, ffn_op, ffn_dim, cross_heads, span), index, dim, encoder_dim = layer_key
        kernel_size = BlockType(block).kernel_size(self.space.kernel_sizes, index)
        keys: List[Tuple[Any, ...]] = [("mixer", decoder, block, heads, dim, kernel_size)]
        if decoder:
            keys.append(("cross", cross_heads, attended_encoder_layers(span), dim, encoder_dim))
        return keys + [("ffn", decoder, ffn_op, ffn_dim, dim), ("norms", decoder, dim)]

    def _build(self, key: Tuple[Any, ...]) -> Tuple[Part, ...]:
        wl, qkv = self.workload, self.space.qkv_dim
        kind = key[0]
        if kind == "embedding":
            return (embedding_part(key[1], key[2], wl),)
        if kind == "output":
            return output_projection_parts(key[1], wl)
        if kind == "cross":
            _, heads, layers, dim, encoder_dim = key
            return cross_attention_parts(dim, encoder_dim, qkv, heads, layers, wl)
        decoder = key[1]
        stream = decoder_stream(wl) if decoder else encoder_stream(wl)
        if kind == "mixer":
            _, _, block, heads, dim, kernel_size = key
            block = BlockType(block)
            return token_mixer_parts(
                block, stream, decoder, dim, heads, wl, qkv_dim=self.space.attention_qkv_dim(block),
                kernel_heads=self.space.kernel_heads(block, heads), kernel_size=kernel_size,
            )
        if kind == "ffn":
            _, _, op, ffn_dim, dim = key
            return ffn_parts(OpKind(op), stream, dim, ffn_dim, wl)
        _, _, dim = key
        return (layer_norms_part(stream, dim, 3 if decoder else 2, wl),)

    def _component(self, key: Tuple[Any, ...]) -> Tuple[Tuple[PartCost, ...], _Summary]:
        cached = self._components.get(key)
        if cached is None:
            acc = self.profile.accelerator
            costs = tuple(
                PartCost(part, part_energy_pj(part, self.profile), part_cycles(part, acc)) for part in self._build(key)
            )
            ops = OpCounts.total_of(c.part.ops for c in costs)
            summary = (
                sum(c.total_energy_pj for c in costs),
                sum(c.cycles for c in costs),
                float(sum(c.part.params for c in costs)),
                float(ops.count(OpKind.MULT)),
                float(ops.count(OpKind.ADD)),
                float(ops.count(OpKind.SHIFT)),
            )
            cached = self._components[key] = (costs, summary)
        return cached

    def _layer_summary(self, key: _LayerKey) -> _Summary:
        summary = self._layers.get(key)
        if summary is None:
            parts = [self._component(k)[1] for k in self._component_keys(key)]
            summary = self._layers[key] = tuple(map(sum, zip(*parts)))  # type: ignore[assignment]
        return summary

    def _layer_keys(self, sub: SubnetConfig) -> List[_LayerKey]:
        """One :data:`_LayerKey` per layer, encoder first."""
        enc, dec = sub.encoder_embed_dim, sub.decoder_embed_dim
        keys: List[_LayerKey] = [
            ((False, l.block._value_, l.num_heads, l.ffn_op._value_, l.ffn_dim, None, None), i, enc, 0)
            for i, l in enumerate(sub.encoder)
        ]
        keys += [
            ((True, l.block._value_, l.num_heads, l.ffn_op._value_, l.ffn_dim, l.cross_heads, l.enc_dec_span),
             i, dec, enc)
            for i, l in enumerate(sub.decoder)
        ]
        return keys

    def _check(self, sub: SubnetConfig, layer_keys: List[_LayerKey]) -> None:
        """:func:`~fairseq_shiftadd.space.check`, skipped when every gene of ``sub`` was validated before.

        ``check`` validates each gene on its own (embed dims, depths, each layer's fields per side), so a
        subnet made of already validated genes is valid: the cache is exact.
        """
        genes = [("dims", sub.encoder_embed_dim, sub.decoder_embed_dim, len(sub.encoder), len(sub.decoder))]
        genes += [key[0] for key in layer_keys]
        if not self._checked.issuperset(genes):
            check(self.space, sub)
            self._checked.update(genes)

    def _gene_choices(self, decoder: bool) -> Tuple[Tuple[Any, ...], ...]:
        """The space's values of each position of a layer's genes (:data:`_Genes`) on one side."""
        space = self.space
        ops = tuple(op._value_ for op in space.ffn_ops)
        if not decoder:
            return ((False,), tuple(b._value_ for b in space.encoder_blocks), space.encoder_heads, ops,
                    space.encoder_ffn_dims, (None,), (None,))
        return ((True,), tuple(b._value_ for b in space.decoder_blocks), space.decoder_self_heads, ops,
                space.decoder_ffn_dims, space.decoder_cross_heads, space.enc_dec_spans)

    def _fixed_layer_pj(self, key: _LayerKey) -> float:
        """A layer's fixed energy (pJ): each component at its cheapest over the genes it depends on."""
        genes, index, dim, encoder_dim = key
        cache_key = (genes[0], index, dim, encoder_dim)
        fixed = self._fixed_layers.get(cache_key)
        if fixed is None:
            choices = self._gene_choices(genes[0])
            fixed = 0.0
            for position, component in enumerate(self._component_keys(key)):
                varied = _COMPONENT_GENES[component[0]]
                energies = []
                for values in itertools.product(*(choices[i] for i in varied)):
                    alternative = list(genes)
                    for i, value in zip(varied, values):
                        alternative[i] = value
                    keys = self._component_keys((tuple(alternative), index, dim, encoder_dim))
                    energies.append(self._component(keys[position])[1][0])
                fixed += min(energies)
            self._fixed_layers[cache_key] = fixed
        return fixed

    # -- public API --------------------------------------------------------------------------------

    def fixed_energy_mj(self, sub: SubnetConfig) -> float:
        """The energy of ``sub`` (mJ) that no per-layer gene can change at its size (module docstring).

        Raises:
            ValueError: ``sub`` is not in the space.
        """
        if not isinstance(sub, SubnetConfig):
            check(self.space, sub)
        layer_keys = self._layer_keys(sub)
        self._check(sub, layer_keys)
        enc, dec = sub.encoder_embed_dim, sub.decoder_embed_dim
        fixed = self._component(("embedding", enc, dec))[1][0] + self._component(("output", dec))[1][0]
        fixed += sum(self._fixed_layer_pj(key) for key in layer_keys)
        return fixed / PJ_PER_MJ

    def _base_metrics(self, sub: SubnetConfig) -> Dict[str, float]:
        if not isinstance(sub, SubnetConfig):
            check(self.space, sub)  # raises the space's message
        layer_keys = self._layer_keys(sub)
        self._check(sub, layer_keys)
        enc, dec = sub.encoder_embed_dim, sub.decoder_embed_dim
        summaries = [self._component(("embedding", enc, dec))[1], self._component(("output", dec))[1]]
        summaries += [self._layer_summary(key) for key in layer_keys]
        energy, cycles, params, mults, adds, shifts = map(sum, zip(*summaries))
        return {
            "energy_mj": energy / PJ_PER_MJ,
            "analytical_latency_ms": cycles_to_ms(cycles, self.profile.accelerator),
            "params": params,
            "mults": mults,
            "adds": adds,
            "shifts": shifts,
        }

    def metrics(self, sub: SubnetConfig) -> Dict[str, float]:
        """:data:`METRICS` of ``sub`` (``predicted_latency_ms`` only with a latency predictor).

        Raises:
            ValueError: ``sub`` is not in the space (see :func:`fairseq_shiftadd.space.check`).
        """
        return self.metrics_batch([sub])[0]

    def metrics_batch(self, subs: Sequence[SubnetConfig]) -> List[Dict[str, float]]:
        """:meth:`metrics` of several subnets (the latency predictor, if any, runs once on the batch)."""
        out = [self._base_metrics(sub) for sub in subs]
        if self.latency_predictor is not None and out:
            for metrics, latency in zip(out, self.latency_predictor.predict(list(subs))):
                metrics["predicted_latency_ms"] = float(latency)
        return out

    def report(self, sub: SubnetConfig) -> CostReport:
        """The full breakdown of ``sub`` (:class:`CostReport`); its totals equal :meth:`metrics`."""
        if not isinstance(sub, SubnetConfig):
            check(self.space, sub)
        layer_keys = self._layer_keys(sub)
        self._check(sub, layer_keys)
        enc, dec = sub.encoder_embed_dim, sub.decoder_embed_dim
        layers: Dict[str, Tuple[PartCost, ...]] = {"embedding": self._component(("embedding", enc, dec))[0]}
        for key in layer_keys:
            name = f"{'decoder' if key[0][0] else 'encoder'}.{key[1]}"
            layers[name] = tuple(cost for k in self._component_keys(key) for cost in self._component(k)[0])
        output = self._component(("output", dec))[0]
        if output:
            layers["output_projection"] = output
        return CostReport(sub, self.workload, self.profile, layers, self.fixed_energy_mj(sub))
