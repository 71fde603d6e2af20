"""Supernet training throughput against a plain fairseq Transformer of the same size, in one run.

The supernet runs the subnet that *is* a Transformer (attention blocks, multiplicative FFNs, the
Transformer's dims) while carrying every other candidate of its space; the baseline is fairseq's own
``transformer`` with the same dims. A step is forward, label-smoothed cross-entropy (plus the sharing
regulariser for the supernet), backward and an Adam update, on random tokens of realistic lengths.
Reported: tokens per second of each and the ratio (target: supernet within 1.3x of the baseline). The
models are timed round-robin and each reports its median step, so that other jobs on the machine bias no
model; the load average is printed.

    python benchmarks/supernet.py [--steps 10] [--tokens 4096] [--space tiny]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace
from typing import Callable, Dict, List, Sequence

import torch
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel, base_architecture

from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import SearchSpace, get_space, largest


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="tiny", help="search space (the Transformer takes its largest dims)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=4096, help="target tokens per batch")
    parser.add_argument("--length", type=int, default=24, help="sentence length in tokens")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--sharing", nargs="+", default=["none", "shared", "heterogeneous"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    space = get_space(args.space)
    dictionary = _dictionary(args.vocab)
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
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
