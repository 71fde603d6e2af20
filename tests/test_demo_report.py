"""The CPU demo's report (fairseq_shiftadd.reports) and its recipe files (examples/multi30k_en_de)."""
from __future__ import annotations

import csv
import dataclasses
import importlib
import importlib.metadata
import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest
import torch

from fairseq_shiftadd import reports
from fairseq_shiftadd.reports import demo
from fairseq_shiftadd.cost import CostModel, Workload, workload_header
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import (
    BlockDetails,
    SpaceRecord,
    SubnetConfig,
    check,
    get_space,
    largest,
    parse_restriction,
    restrict,
    sample,
    smallest,
)
from fairseq_shiftadd.scoring import read_generate_output, read_lines, score
from inprocess import decode, train_updates
from recipe_args import args_flags

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "multi30k_en_de"
DEMO = get_space("demo")


def _args_flags(name: str) -> list:
    return args_flags(RECIPE / name)


def test_demo_space_largest_is_the_baseline_transformer_shape():
    """The baseline (fairseq transformer, embed 128, 2 + 2 layers, FFN 512, 4 heads) is the demo space's largest."""
    flags = _args_flags("baseline.args")
    value = {flags[i]: flags[i + 1] for i in range(len(flags) - 1) if flags[i].startswith("--")}
    big = largest(DEMO)
    assert int(value["--encoder-embed-dim"]) == big.encoder_embed_dim == big.decoder_embed_dim
    assert int(value["--encoder-layers"]) == len(big.encoder) and int(value["--decoder-layers"]) == len(big.decoder)
    for layer in big.encoder + big.decoder:
        assert (layer.block, layer.ffn_op) == (BlockType.ATTENTION, OpKind.MULT)
        assert layer.ffn_dim == int(value["--encoder-ffn-embed-dim"])
        assert layer.num_heads == int(value["--encoder-attention-heads"])


def test_hand_hybrid_fits_the_demo_search_bound_at_under_70_percent_of_the_baseline():
    """examples/multi30k_en_de/subnets/hand_hybrid.yaml (the README's reference hybrid) is a subnet of the demo
    space as the demo builds it, inside the search's energy constraint, and >= 30 % cheaper than the baseline (the
    demo space's largest, same accounting)."""
    space = dataclasses.replace(DEMO, block_details=BlockDetails(_flag_value("supernet.args", "--block-details")))
    hybrid = SubnetConfig.load(RECIPE / "subnets" / "hand_hybrid.yaml")
    check(space, hybrid)
    assert any(layer.ffn_op is OpKind.SHIFT for layer in hybrid.encoder + hybrid.decoder)
    cost = CostModel(space, _flag_value("search.args", "--hardware-profile"),
                     Workload(accounting=_flag_value("search.args", "--cost-accounting")))
    energy = cost.metrics(hybrid)["energy_mj"]
    metric, bound = _flag_value("search.args", "--constraint").split("<=")
    assert metric == "energy_mj" and energy <= float(bound)
    assert energy <= 0.7 * cost.metrics(largest(space))["energy_mj"]


def _flag_value(name: str, flag: str) -> str:
    flags = _args_flags(name)
    return flags[flags.index(flag) + 1]


def test_demo_search_costs_at_the_decoding_beam():
    assert _flag_value("search.args", "--beam") == _flag_value("generate.args", "--beam")
    assert _flag_value("gpu_search.args", "--beam") == _flag_value("generate.args", "--beam")


def test_demo_space_has_every_operator_and_spans_2x_energy_under_both_accountings():
    """Every token mixer with attention (lightweight conv, add and shift-add branches) and every FFN operator, and
    widths and depths enough that the most expensive subnet costs at least twice the cheapest under each accounting."""
    assert set(DEMO.encoder_blocks) == set(DEMO.decoder_blocks) == {b for b in BlockType if b.has_attention}
    assert set(DEMO.ffn_ops) == set(OpKind)
    for accounting, beam in (("streaming", int(_flag_value("generate.args", "--beam"))), ("original", 1)):
        cost = CostModel(DEMO, "45nm", Workload(vocab_size=8008, accounting=accounting, beam=beam))
        cheapest = cost.metrics(smallest(DEMO, ffn_op=OpKind.SHIFT))["energy_mj"]
        assert cost.metrics(largest(DEMO))["energy_mj"] >= 2 * cheapest, accounting


def test_demo_constraint_is_at_most_70_percent_of_the_baseline_under_the_original_accounting():
    """The search's bound makes the hybrid >= 30 % cheaper than the baseline (original accounting) by construction;
    both searches (the hybrid's and the attention-only one) have feasible subnets."""
    flags = _args_flags("search.args")
    assert flags[flags.index("--cost-accounting") + 1] == "original"
    cost = CostModel(DEMO, "45nm", Workload(accounting="original"))
    bound = float(next(f for f in flags if f.startswith("energy_mj<=")).split("<=")[1])
    assert bound <= 0.7 * cost.metrics(largest(DEMO))["energy_mj"]
    restricted = restrict(DEMO, parse_restriction([f for f in _args_flags("attention_only.args") if f != "--restrict"]))
    assert restricted.encoder_blocks == restricted.decoder_blocks == (BlockType.ATTENTION,)
    assert restricted.ffn_ops == (OpKind.MULT,)
    rng = random.Random(0)
    for space in (DEMO, restricted):
        feasible = [s for s in (sample(space, rng) for _ in range(50)) if cost.metrics(s)["energy_mj"] <= bound]
        assert len(feasible) >= 25, space.name


TRAINING_RECIPES = ("supernet.args", "subnet.args", "baseline.args", "gpu_supernet.args", "gpu_subnet.args")
SEARCH_RECIPES = ("search.args", "gpu_search.args")
PARSED_RECIPES = {*TRAINING_RECIPES, *SEARCH_RECIPES, "attention_only.args", "generate.args"}
"""The recipe files the tests below parse with the tool that reads each."""


@pytest.mark.parametrize("name", TRAINING_RECIPES)
def test_recipe_args_parse_with_fairseq(name):
    """Every training recipe parses with fairseq-train's own parser (the registered arch, space and flags)."""
    from fairseq import options

    import fairseq_shiftadd.registry  # noqa: F401

    flags = _args_flags(name)
    argv = ["DATA", *flags] + (["--subnet", "{}"] if "shiftadd_transformer" in flags else [])
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    assert args.arch == flags[flags.index("--arch") + 1]
    if "--space" in flags or "shiftadd_supernet_demo" in flags:
        get_space(args.space)


SUPERNET_RECIPES = ("single", "nosharing", "sandwich", "distill", "operators")


def _supernet_recipes(call: str) -> subprocess.CompletedProcess:
    """``call`` run in bash after sourcing examples/args.sh and examples/multi30k_en_de/supernet_recipes.sh."""
    script = f"source examples/args.sh; source examples/multi30k_en_de/supernet_recipes.sh; {call}"
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("name", SUPERNET_RECIPES)
def test_supernet_recipes_are_the_demo_supernet_varied_as_named(name):
    """Each named supernet recipe parses with fairseq-train; it is supernet.args with the sharing mode, sandwich
    rule, operator sandwich and distillation its name says, and trains as many subnets per update as it counts."""
    from fairseq import options

    import fairseq_shiftadd.registry  # noqa: F401

    assert _supernet_recipes("echo $SUPERNET_RECIPES").stdout.split() == list(SUPERNET_RECIPES)
    flags = _supernet_recipes(f"supernet_recipe_flags {name}").stdout.splitlines()
    args = options.parse_args_and_arch(options.get_training_parser(), ["DATA", *flags])
    assert args.sharing == ("none" if name == "nosharing" else "heterogeneous")
    assert args.sandwich == (name in {"sandwich", "distill", "operators"})
    assert args.sandwich_operators == (name == "operators") and args.distill_weight == (name == "distill")
    per_update = int(_supernet_recipes(f"supernet_recipe_subnets_per_update {name}").stdout)
    assert per_update == 1 + 2 * args.sandwich + args.sandwich_operators
    if name == "sandwich":
        assert sorted(flags) == sorted(_args_flags("supernet.args"))


def test_unknown_supernet_recipe_is_refused_in_one_line():
    for function in ("supernet_recipe_flags", "supernet_recipe_subnets_per_update"):
        result = _supernet_recipes(f"{function} shared")
        assert result.returncode == 2 and not result.stdout
        expected = f"unknown supernet recipe 'shared' (one of: {' '.join(SUPERNET_RECIPES)})"
        assert result.stderr.splitlines() == [expected]


@pytest.mark.parametrize("recipe, error", [
    ("shared", "unknown supernet recipe 'shared'"),
    ("sandwich", "supernet was trained with SUPERNET_RECIPE=nosharing, not sandwich: use another WORK"),
])
def test_demo_refuses_an_unknown_or_changed_supernet_recipe_before_any_stage(tmp_path, recipe, error):
    """A WORK whose supernet was trained with another recipe is refused in one line, before stage 1 touches it."""
    import sys

    (tmp_path / "supernet").mkdir()
    (tmp_path / "supernet" / "recipe").write_text("nosharing\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VENV": sys.prefix, "WORK": str(tmp_path),
           "SUPERNET_RECIPE": recipe}
    result = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and not result.stdout, result.stdout
    (line,) = result.stderr.splitlines()
    assert error in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["supernet"]
    assert (tmp_path / "supernet" / "recipe").read_text() == "nosharing\n"


def test_cpu_recipes_share_the_training_recipe():
    """The retrained hybrid and the baseline differ only in the model: same optimiser, schedule, batch, dropout."""
    model_flags = {"--arch", "--space", "--user-dir",
                   "--weight-dropout", "--block-details"}  # weight dropout: kernels only

    def recipe(name):
        flags = _args_flags(name)
        pairs = {flags[i]: flags[i + 1] for i in range(len(flags) - 1)
                 if flags[i].startswith("--") and not flags[i + 1].startswith("--")}
        return {k: v for k, v in pairs.items()
                if k not in model_flags and "embed" not in k and "layers" not in k and "heads" not in k}

    assert recipe("subnet.args") == recipe("baseline.args")


def test_describe_names_every_layer():
    sub = sample(DEMO, random.Random(3))
    text = reports.describe(sub)
    enc, dec = text.split(" | ")
    assert enc.count("/") == len(sub.encoder) and dec.count("/") == len(sub.decoder)
    assert f"{sub.decoder[0].block.value}/{sub.decoder[0].ffn_op.value}{sub.decoder[0].ffn_dim}" in dec


def _write_candidates(path: Path, subs, energies, fitnesses) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "generation", "feasible", "loss", "energy_mj", "params", "subnet"])
        for i, (s, e, l) in enumerate(zip(subs, energies, fitnesses)):
            w.writerow([i, 0, int(l is not None), "" if l is None else l, e, 1000, json.dumps(s.to_dict())])


def test_read_candidates_and_plot(tmp_path):
    rng = random.Random(0)
    subs = [sample(DEMO, rng) for _ in range(6)]
    energies = [10.0, 11.0, 12.0, 13.0, 14.0, 25.0]
    losses = [5.0, 4.0, 4.5, 3.5, 3.6, None]
    _write_candidates(tmp_path / "candidates.csv", subs, energies, losses)
    candidates = reports.read_candidates(tmp_path / "candidates.csv")
    assert [c.subnet for c in candidates] == subs
    assert [c.energy_mj for c in candidates] == energies and [c.fitness for c in candidates] == losses
    reports.plot_front(tmp_path / "front.png", candidates, {"hybrid": (13.0, 3.5, 22.0), "baseline": (22.8, 3.4, 21.0)})
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "front.png.partial").exists()


def test_read_candidates_rejects_other_csv(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="energy_mj"):
        reports.read_candidates(tmp_path / "x.csv")


def test_training_progress_reads_checkpoint_last(tmp_path):
    torch.save({"extra_state": {"previous_training_time": 123.5}, "optimizer_history": [{"num_updates": 7}]},
               tmp_path / "checkpoint_last.pt")
    assert reports.training_progress(tmp_path) == (123.5, 7)
    with pytest.raises(FileNotFoundError, match="checkpoint_last.pt"):
        reports.training_progress(tmp_path / "missing")


def test_checkpoint_quant_bits(tmp_path):
    """An 8-bit model is costed at 8 bits; float models (no field, a legacy Namespace, None) at 32."""
    from argparse import Namespace

    for model_cfg, expected in (({"quant_bits": 8}, 8), ({"quant_bits": None}, None), ({}, None),
                                (Namespace(arch="transformer"), None), (Namespace(quant_bits=8), 8)):
        torch.save({"cfg": {"model": model_cfg}}, tmp_path / "c.pt")
        assert reports.checkpoint_quant_bits(tmp_path / "c.pt") == expected


def test_format_table_has_a_row_per_model_and_every_column():
    rows = [
        reports.ModelResult(name=n, subnet=reports.describe(largest(DEMO)), sacrebleu=b, sacrebleu_signature="sig",
                                tokenized_bleu=b + 1, bits=32, energy_streaming_mj=e, energy_original_mj=e / 10,
                                fixed_share_streaming=0.6, fixed_share_original=0.4, latency_ms=30.0,
                                params=1_950_720, mults=59_440_000, adds=59_150_000, shifts=0, train_s=720.4,
                                updates=450)
        for n, b, e in (("hybrid", 23.1, 18.2), ("baseline", 22.5, 22.8))
    ]
    workloads = {"streaming": Workload(vocab_size=8008, beam=5), "original": Workload(accounting="original")}
    table = reports.format_table(rows, workloads, "45nm")
    lines = table.splitlines()
    assert lines[0].count("|") == len(reports.COLUMNS) + 1
    assert "energy, streaming" in lines[0] and "energy, original" in lines[0]
    assert (lines[2].startswith("| hybrid | 23.10 | 24.10 | 32 | 18.20 | 1.82 | 60 % | 40 % |")
            and "| 720 | 450 |" in lines[2])
    assert lines[3].startswith("| baseline | 22.50")
    assert "1.95M" in lines[2] and "sig" in table
    assert "streaming: streaming accounting" in table and "beam 5" in table
    assert "original: original accounting" in table and "one teacher-forced pass" in table


DEMO_SCRIPTS = (REPO / "scripts" / "demo.sh", RECIPE / "gpu.sh")
_CALL = re.compile(r"(?<![\w-])(fairseq-[a-z0-9-]+|python -m [\w.]+)(.*)")


def _calls(script: Path) -> List[Tuple[str, List[str]]]:
    """``(command, literal --flags)`` of every fairseq console script and ``python -m`` module ``script`` runs
    (continuation lines joined, comments and ``"$(...)"`` values dropped, cut at the first pipe or redirection)."""
    text = re.sub(r"(^|\s)#.*$", "", script.read_text().replace("\\\n", " "), flags=re.M)
    calls = []
    for line in text.splitlines():
        for match in _CALL.finditer(line):
            rest = re.sub(r'"\$\([^)]*\)"', "VALUE", match.group(2))
            rest = re.split(r"\s(?:\||;|&|>|2>)|\)", rest)[0]
            calls.append((match.group(1), re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)))
    return calls


def _options(command: str, capsys) -> str:
    """Every option ``command`` accepts, as text: its parser's option strings, or its ``--help``."""
    from fairseq import options

    from fairseq_shiftadd.search.cli import get_parser

    parsers = {"fairseq-train": options.get_training_parser, "fairseq-generate": options.get_generation_parser,
               "fairseq-shiftadd-search": get_parser}
    if command in parsers:
        return " ".join(parsers[command]()._option_string_actions)
    if command.startswith("python -m "):
        main = importlib.import_module(command.removeprefix("python -m ")).main
    else:
        (entry,) = importlib.metadata.entry_points(group="console_scripts", name=command)
        main = entry.load()
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0, command
    return capsys.readouterr().out


@pytest.mark.parametrize("script", DEMO_SCRIPTS, ids=lambda p: p.name)
def test_demo_scripts_call_existing_commands_files_and_flags(script: Path, capsys):
    """The demo scripts are valid bash; every stage they run exists and accepts every flag they pass it; every
    recipe file they read exists and is parsed by the tool that reads it (the parse tests of this module)."""
    subprocess.run(["bash", "-n", str(script)], check=True)
    calls = _calls(script)
    assert {"fairseq-train", "fairseq-shiftadd-search", "fairseq-generate"} <= {c for c, _ in calls}
    for command, flags in calls:
        known = _options(command, capsys)
        unknown = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", known)]
        assert not unknown, (script.name, command, unknown)
    for name in set(re.findall(r"[\w]+\.args", script.read_text())):
        assert (RECIPE / name).is_file() and name in PARSED_RECIPES, name


@pytest.mark.slow
def test_report_refuses_a_decode_that_lost_sentences(tmp_path, capsys):
    """fairseq-generate can drop sentences; the report fails, naming the file, before evaluating any model."""
    (tmp_path / "test.de").write_text("Ein Hund .\nZwei Katzen .\nDrei Vögel .\n", encoding="utf-8")
    (tmp_path / "full.gen").write_text("".join(f"D-{i}\t-0.5\tSatz {i}\n" for i in range(3)), encoding="utf-8")
    (tmp_path / "short.gen").write_text("D-0\t-0.5\tSatz 0\nD-2\t-0.5\tSatz 2\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        demo.main([
            "--space", "demo", "--data", str(tmp_path / "no-data"), "--reference", str(tmp_path / "test.de"),
            "--target-lang", "de", "--model", "a", "largest", str(tmp_path / "a"), str(tmp_path / "full.gen"),
            "--model", "b", "smallest", str(tmp_path / "b"), str(tmp_path / "short.gen"), "--out", str(tmp_path / "r"),
        ])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "short.gen: 1 of 3 sentences have no 'D-' line (ids 1)" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("space, error", [
    ("demo", "short.gen: 1 of 3 sentences"),  # the recorded space was taken: the report went on to the decodes
    ("iwslt14_de_en", "--space iwslt14_de_en: --model subnet file '{best}' was searched in space 'demo'"),
])
def test_report_takes_the_space_a_model_subnet_file_records(tmp_path, capsys, space, error):
    """Without --supernet the models' space is the one the search recorded in best.yaml (compact block details),
    not --space with the original ones (which would refuse the file); a --space naming another is refused."""
    compact = dataclasses.replace(DEMO, block_details=BlockDetails.COMPACT)
    best = tmp_path / "best.yaml"
    best.write_text(SpaceRecord.of(compact).header() + "\n" + smallest(compact).to_yaml())
    (tmp_path / "test.de").write_text("Ein Hund .\nZwei Katzen .\nDrei Vögel .\n", encoding="utf-8")
    (tmp_path / "full.gen").write_text("".join(f"D-{i}\t-0.5\tSatz {i}\n" for i in range(3)), encoding="utf-8")
    (tmp_path / "short.gen").write_text("D-0\t-0.5\tSatz 0\nD-2\t-0.5\tSatz 2\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        demo.main([
            "--space", space, "--data", str(tmp_path / "no-data"), "--reference", str(tmp_path / "test.de"),
            "--target-lang", "de", "--model", "a", str(best), str(tmp_path / "a"), str(tmp_path / "full.gen"),
            "--model", "b", "largest", str(tmp_path / "b"), str(tmp_path / "short.gen"), "--out", str(tmp_path / "r"),
        ])
    err = capsys.readouterr().err
    assert error.format(best=best) in err and err.count("\n") == 1


def test_report_end_to_end_on_tiny_models(tmp_path, multi30k_en_de):
    """Two tiny standalone models trained for a few updates (in process, fairseq's Trainer), decoded on the first
    test sentences, reported (table, JSON, plot); every number recomputed from its inputs."""
    data = str(multi30k_en_de)  # the prepared data-bin; raw/ beside it
    sentences = 40
    reference = tmp_path / "test.de"
    reference.write_text("\n".join(read_lines(multi30k_en_de.parent / "raw" / "test.de")[:sentences]) + "\n",
                         encoding="utf-8")
    tiny = DEMO
    subs = {"hybrid": sample(tiny, random.Random(5)), "baseline": largest(tiny)}
    for name, sub in subs.items():
        check(tiny, sub)
        sub.save(tmp_path / f"{name}.yaml")
        last = train_updates(
            [data, "--user-dir", str(REPO / "fairseq_shiftadd"), "--task", "translation",
             "--arch", "shiftadd_transformer", "--space", "demo", "--subnet", str(tmp_path / f"{name}.yaml"),
             "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1024", "--cpu"],
            3, tmp_path / name,
        )[-1]
        for saved in ("checkpoint_best.pt", "checkpoint_last.pt"):
            shutil.copy(last, tmp_path / name / saved)
        decode(tmp_path / name / "checkpoint_best.pt", "test", sentences, tmp_path / f"{name}.gen", beam=1, lenpen=1.0,
               max_len_b=5)
    _write_candidates(tmp_path / "candidates.csv", [subs["hybrid"]], [18.0], [7.5])
    search_workload = Workload(vocab_size=100, beam=2)  # what a search records in its best.yaml
    (tmp_path / "hybrid.yaml").write_text(f"{workload_header(search_workload, '45nm')}\n"
                                          + (tmp_path / "hybrid.yaml").read_text())
    demo.main([
        "--space", "demo", "--data", data, "--reference", str(reference), "--target-lang", "de",
        "--model", "hybrid", str(tmp_path / "hybrid.yaml"), str(tmp_path / "hybrid"), str(tmp_path / "hybrid.gen"),
        "--model", "baseline", "largest", str(tmp_path / "baseline"), str(tmp_path / "baseline.gen"),
        "--candidates", str(tmp_path / "candidates.csv"), "--out", str(tmp_path / "report"), "--beam", "3",
    ])
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [r["name"] for r in results] == ["hybrid", "baseline"]
    vocab = len(open(Path(data) / "dict.de.txt").readlines()) + 4
    streaming = CostModel(DEMO, "45nm", Workload(vocab_size=vocab, beam=3))
    original = CostModel(DEMO, "45nm", Workload(accounting="original"))
    for r, sub in zip(results, subs.values()):
        assert r["energy_streaming_mj"] == pytest.approx(streaming.metrics(sub)["energy_mj"])
        assert r["energy_original_mj"] == pytest.approx(original.metrics(sub)["energy_mj"])
        assert r["fixed_share_original"] == pytest.approx(original.fixed_energy_mj(sub) / r["energy_original_mj"])
        assert r["bits"] == 32
        assert r["fixed_share_streaming"] == pytest.approx(streaming.fixed_energy_mj(sub) / r["energy_streaming_mj"])
        assert r["updates"] == 3 and r["latency_ms"] > 0
        scores = score(read_generate_output(tmp_path / f"{r['name']}.gen", expected=sentences),
                       read_lines(reference), "de")
        assert (r["sacrebleu"], r["tokenized_bleu"]) == pytest.approx((scores.sacrebleu, scores.tokenized_bleu))
    assert (tmp_path / "report" / "front.png").is_file()
    assert (tmp_path / "report" / "results.md").read_text().count("\n| ") == 2


def test_latencies_are_measured_in_alternating_rounds(monkeypatch):
    """Each round times every model once, in order, and each model gets its rounds' median: a drift during the
    measurement (here +1 ms per timing) falls on every model alike."""
    from fairseq import checkpoint_utils

    from fairseq_shiftadd import latency

    class Model:
        def __init__(self, name: str) -> None:
            self.name = name

        def float(self) -> "Model":
            return self

    calls, drift = [], iter(range(100))

    def time_model(model, protocol):
        calls.append(model.name)
        return latency.LatencyMeasurement(encoder_ms=0.0, decoder_ms=(model.name == "b") * 10.0 + next(drift))

    monkeypatch.setattr(checkpoint_utils, "load_model_ensemble", lambda paths, arg_overrides: ([Model(paths[0])], {}))
    monkeypatch.setattr(latency.measure, "time_model", time_model)
    measured = reports.measure_checkpoint_latencies([Path("a"), Path("b")], "data", Workload(beam=5), threads=1)
    assert calls == ["a", "b"] * 3
    assert measured == [2.0, 13.0]  # a: 0, 2, 4; b: 10 + 1, 10 + 3, 10 + 5


@pytest.mark.parametrize("name", SEARCH_RECIPES)
def test_demo_search_flags_parse_with_the_search_cli(tmp_path, name):
    """The search recipes, alone and with attention_only.args, parse with fairseq-shiftadd-search's own parser."""
    from fairseq import options

    from fairseq_shiftadd.search.cli import get_parser

    base = [str(tmp_path), *_args_flags(name), "--path", "x.pt", "--save-dir", "s"]
    plain = options.parse_args_and_arch(get_parser(), base)
    restricted = options.parse_args_and_arch(get_parser(), base + _args_flags("attention_only.args"))
    assert plain.restrict == [] and restricted.restrict == ["blocks=attention", "ffn_ops=mult"]
    assert plain.cost_accounting == restricted.cost_accounting
    assert plain.constraint == restricted.constraint


def test_generate_recipe_parses_with_fairseq_generate(tmp_path):
    from fairseq import options

    import fairseq_shiftadd.registry  # noqa: F401

    args = options.parse_args_and_arch(options.get_generation_parser(),
                                       [str(tmp_path), *_args_flags("generate.args"), "--path", "x.pt"])
    assert args.beam == int(_flag_value("generate.args", "--beam")) and args.post_process == "sentencepiece"
