"""Supernet training throughput against a plain fairseq Transformer of the same size, in one run.

The supernet runs the subnet that *is* a Transformer (attention blocks, multiplicative FFNs, the
Transformer's dims) while carrying every other candidate of its space; the baseline is fairseq's own
``transformer`` with the same dims. A step is forward, label-smoothed cross-entropy (plus the sharing
regulariser for the supernet), backward and an Adam update, on random tokens of realistic lengths.
Reported: tokens per second of each and the ratio (target: supernet within 1.3x of the baseline). The
models are timed round-robin and each reports its median step, so that other jobs on the machine bias no
model; the load average is printed.

``--eval-subnets N`` measures instead the inference weight cache of the weight slots (:mod:`~fairseq_shiftadd.ops.
kernels.weight_cache`): the time to evaluate ``N`` uniformly sampled subnets of the space in eval mode without
gradients, as the search's fitness does, on ``--eval-batches`` batches of ``--eval-sentences`` random sentences
each: the teacher-forced validation loss (``loss``) and beam search (``beam``, fairseq's ``SequenceGenerator``
at ``--beam``, ``--length`` steps: one decoder call per step), with the cache and without it
(:func:`~fairseq_shiftadd.ops.kernels.weight_cache.caching_disabled`), timed round-robin in one run.

``--decode`` measures instead the decoding latency of one sentence (HAT's protocol, as the demo's report measures
it: batch 1, 30 source tokens, 30 incremental steps at ``--beam``, a log-softmax and a beam reorder per step;
:func:`~fairseq_shiftadd.latency.time_model`) of the standalone subnet that is a Transformer and of fairseq's
``transformer`` of the same dims, random weights, ``--steps`` round-robin rounds, each model's median of its
rounds' trimmed means: what the plugin's model code costs at inference beyond fairseq's. ``--ffn-ops`` adds the same
subnet with shift or add FFNs (one row each, in the same rounds): what the FFN's operator costs a decoding step
(with ``FAIRSEQ_SHIFTADD_KERNELS=reference``, on the reference paths: for shift FFNs the float weight instead of
the packed codes).

    python benchmarks/supernet.py [--steps 10] [--tokens 4096] [--space tiny]
    python benchmarks/supernet.py --eval-subnets 8 --space demo [--sharing heterogeneous] [--steps 3]
    python benchmarks/supernet.py --decode --space demo --beam 5 [--steps 10]
    python benchmarks/supernet.py --decode --space wmt14_en_de --beam 5 --steps 3 --vocab 32000 --ffn-ops mult shift
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from types import SimpleNamespace
from typing import Callable, Dict, List, Sequence

import torch
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel, base_architecture
from fairseq.sequence_generator import SequenceGenerator

from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.kernels.build import enabled as kernels_enabled
from fairseq_shiftadd.ops.kernels.weight_cache import caching_disabled
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import SearchSpace, get_space, largest, sample


def _dictionary(size: int) -> Dictionary:
    dictionary = Dictionary()
    for i in range(size - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def _transformer(task: SimpleNamespace, space: SearchSpace) -> TransformerModel:
    args = SimpleNamespace(
        encoder_embed_dim=space.max_encoder_embed_dim, decoder_embed_dim=space.max_decoder_embed_dim,
        encoder_ffn_embed_dim=space.max_encoder_ffn_dim, decoder_ffn_embed_dim=space.max_decoder_ffn_dim,
        encoder_attention_heads=space.max_encoder_heads, decoder_attention_heads=space.max_decoder_self_heads,
        encoder_layers=space.max_encoder_layers, decoder_layers=space.max_decoder_layers,
        share_all_embeddings=True, dropout=0.3, attention_dropout=0.1,
    )
    base_architecture(args)
    return TransformerModel.build_model(args, task)


def _batch(dictionary: Dictionary, tokens: int, length: int) -> Dict[str, torch.Tensor]:
    rows = max(1, tokens // length)
    low = dictionary.nspecial
    src = torch.randint(low, len(dictionary), (rows, length))
    tgt = torch.randint(low, len(dictionary), (rows, length))
    prev = torch.cat([torch.full((rows, 1), dictionary.eos()), tgt[:, :-1]], dim=1)
    return {"src_tokens": src, "src_lengths": torch.full((rows,), length), "prev_output_tokens": prev, "target": tgt}


def _step_fn(model: torch.nn.Module, batch: Dict[str, torch.Tensor], pad: int) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    regulariser = getattr(model, "sharing_regulariser", None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(batch["src_tokens"], batch["src_lengths"], batch["prev_output_tokens"])
        lprobs = model.get_normalized_probs(out, log_probs=True).view(-1, out[0].size(-1))
        loss, _ = label_smoothed_nll_loss(lprobs, batch["target"].view(-1), 0.1, ignore_index=pad)
        if regulariser is not None:
            loss = loss + 10.0 * regulariser() * batch["target"].numel()
        loss.backward()
        optimizer.step()

    return step


def _median_step_seconds(steps: Dict[str, Callable[[], None]], rounds: int) -> Dict[str, float]:
    """Median seconds per step of each model, timed round-robin (one step of each per round, after a warm-up
    step each), so that a change of load on the machine affects every model alike."""
    for step in steps.values():
        step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def _eval_fn(
    supernet: ShiftAddSupernet, space: SearchSpace, dictionary: Dictionary, args: argparse.Namespace
) -> Dict[str, Callable[[], None]]:
    """Evaluations of ``args.eval_subnets`` sampled subnets without gradients: teacher-forced loss and beam search."""
    subnets = [sample(space, random.Random(i)) for i in range(args.eval_subnets)]
    batches = [_batch(dictionary, args.eval_sentences * args.length, args.length) for _ in range(args.eval_batches)]
    generator = SequenceGenerator([supernet], dictionary, beam_size=args.beam, max_len_a=0, max_len_b=args.length)

    @torch.no_grad()
    def loss() -> None:
        for sub in subnets:
            supernet.set_subnet(sub)
            for batch in batches:
                out = supernet(batch["src_tokens"], batch["src_lengths"], batch["prev_output_tokens"])
                lprobs = supernet.get_normalized_probs(out, log_probs=True).view(-1, out[0].size(-1))
                label_smoothed_nll_loss(lprobs, batch["target"].view(-1), 0.1, ignore_index=dictionary.pad())

    @torch.no_grad()
    def beam() -> None:
        for sub in subnets:
            supernet.set_subnet(sub)
            for batch in batches:
                generator.generate([supernet], {"net_input": {k: batch[k] for k in ("src_tokens", "src_lengths")}})

    return {"loss": loss, "beam": beam}


def eval_cache(args: argparse.Namespace, space: SearchSpace, task: SimpleNamespace, dictionary: Dictionary) -> None:
    """Seconds to evaluate the sampled subnets with and without the weight slots' inference cache (module doc)."""
    print(f"space {space.name}; {args.eval_subnets} sampled subnets x {args.eval_batches} batches of "
          f"{args.eval_sentences} sentences x {args.length} tokens; beam {args.beam}; vocabulary {len(dictionary)}; "
          f"median of {args.steps} round-robin rounds; {platform.machine()} {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f} before")
    print("| sharing | evaluation | cached s | uncached s | uncached / cached |")
    print("|---|---|---|---|---|")
    for sharing in args.sharing:
        cfg = SupernetConfig(space=space.name, sharing=sharing, dropout=0.3, attention_dropout=0.1)
        supernet = ShiftAddSupernet.from_space(cfg, task, space).eval()
        for name, evaluate in _eval_fn(supernet, space, dictionary, args).items():

            def uncached(evaluate: Callable[[], None] = evaluate) -> None:
                with caching_disabled():
                    evaluate()

            seconds = _median_step_seconds({"cached": evaluate, "uncached": uncached}, args.steps)
            print(f"| {sharing} | {name} | {seconds['cached']:.2f} | {seconds['uncached']:.2f} | "
                  f"{seconds['uncached'] / seconds['cached']:.2f}x |")
    print(f"load average {os.getloadavg()[0]:.2f} after")


def decode_latency(args: argparse.Namespace, space: SearchSpace, task: SimpleNamespace) -> None:
    """``--decode`` (module docstring): one table row per model, its latency and its ratio to fairseq's."""
    from fairseq_shiftadd.latency import TimingProtocol, build_latency_model, time_models

    sub = largest(space, block=BlockType.ATTENTION, ffn_op=OpKind.MULT)
    models = {"fairseq transformer": _transformer(task, space).eval()}
    for op in dict.fromkeys(OpKind(name) for name in args.ffn_ops):
        models[f"standalone subnet (shiftadd_transformer), {op.value} FFNs"] = build_latency_model(
            space, largest(space, block=BlockType.ATTENTION, ffn_op=op), args.vocab)
    protocol = TimingProtocol(device="cpu", src_len=30, tgt_len=30, beam=args.beam)
    latencies = dict(zip(models, time_models(list(models.values()), protocol, args.steps)))
    print(f"space {space.name}; both models: Transformer {sub.encoder_embed_dim}d, "
          f"{len(sub.encoder)}+{len(sub.decoder)} layers, vocabulary {args.vocab}; 30 + 30 tokens, beam {args.beam}; "
          f"median of {args.steps} round-robin rounds; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{'reference paths' if not kernels_enabled() else 'fast paths where available'}; load average "
          f"{os.getloadavg()[0]:.2f}")
    print("| model | parameters | latency (ms) | vs transformer |")
    print("|---|---|---|---|")
    base = latencies["fairseq transformer"]
    for name, model in models.items():
        ms = latencies[name]
        print(f"| {name} | {sum(p.numel() for p in model.parameters()):,} | {ms:.1f} | {ms / base:.2f}x |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="tiny", help="search space (the Transformer takes its largest dims)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=4096, help="target tokens per batch")
    parser.add_argument("--length", type=int, default=24, help="sentence length in tokens")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--sharing", nargs="+", default=["none", "shared", "heterogeneous"])
    parser.add_argument("--eval-subnets", type=int, default=0,
                        help="measure the inference weight cache on this many sampled subnets instead (module doc)")
    parser.add_argument("--eval-batches", type=int, default=3, help="batches per subnet with --eval-subnets")
    parser.add_argument("--eval-sentences", type=int, default=64, help="sentences per batch with --eval-subnets")
    parser.add_argument("--beam", type=int, default=4, help="beam size with --eval-subnets and --decode")
    parser.add_argument("--decode", action="store_true",
                        help="measure the decoding latency against fairseq's transformer instead (module doc)")
    parser.add_argument("--ffn-ops", nargs="+", default=["mult"], choices=[op.value for op in OpKind],
                        help="with --decode: the subnet's FFN operators to time, one row each")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    space = get_space(args.space)
    dictionary = _dictionary(args.vocab)
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    if args.eval_subnets:
        eval_cache(args, space, task, dictionary)
        return
    if args.decode:
        decode_latency(args, space, task)
        return
    batch = _batch(dictionary, args.tokens, args.length)
    tokens = batch["target"].numel()
    transformer_like = largest(space, block=BlockType.ATTENTION, ffn_op=OpKind.MULT)

    models: Dict[str, torch.nn.Module] = {"fairseq transformer": _transformer(task, space)}
    for sharing in args.sharing:
        cfg = SupernetConfig(space=space.name, sharing=sharing, dropout=0.3, attention_dropout=0.1)
        supernet = ShiftAddSupernet.from_space(cfg, task, space)
        supernet.set_subnet(transformer_like)
        models[f"supernet ({sharing})"] = supernet
    steps = {name: _step_fn(model.train(), batch, dictionary.pad()) for name, model in models.items()}
    load_before = os.getloadavg()[0]
    seconds = _median_step_seconds(steps, args.steps)
    print(f"space {space.name}; subnet = Transformer {transformer_like.encoder_embed_dim}d, "
          f"{len(transformer_like.encoder)}+{len(transformer_like.decoder)} layers; {tokens} target tokens/batch; "
          f"median of {args.steps} round-robin steps; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| model | parameters | train tokens/s | time per token vs transformer |")
    print("|---|---|---|---|")
    base = seconds["fairseq transformer"]
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {params:,} | {tokens / seconds[name]:,.0f} | {seconds[name] / base:.2f}x |")


if __name__ == "__main__":
    main()
