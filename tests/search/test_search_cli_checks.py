"""``fairseq-shiftadd-search`` refuses bad options and changed settings before it loads the checkpoint or the
data, with one line naming the option; ``--restart`` starts over. In process, no supernet needed: ``--path``
names a file that is not a checkpoint, so reaching the load would fail with another error."""
import argparse
import json
import re
from pathlib import Path
from typing import List

import pytest
from fairseq import options

from fairseq_shiftadd.cost import load_profile
from fairseq_shiftadd.search import EvolutionarySearch, TranslationDomain
from fairseq_shiftadd.search.cli import _main as main  # unwrapped: the checks raise; the console script prints one line
from fairseq_shiftadd.search.cli import _settings, get_parser
from fairseq_shiftadd.search.metrics import COST_OPTIONS
from fairseq_shiftadd.search.fingerprint import FINGERPRINT_OPTIONS, file_sha256, search_settings
from fairseq_shiftadd.search.report import OUTPUTS
from fairseq_shiftadd.space import get_space

from test_search_engine import CountingFitness, fake_metrics

SMALL = ["--population", "12", "--parents", "4", "--mutations", "4", "--crossovers", "4", "--generations", "1"]


@pytest.fixture
def setup(tmp_path: Path):
    """(data dir, not-a-checkpoint file, save dir, base argv)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("valid.en-de.en.bin", "valid.en-de.de.bin", "dict.en.txt", "dict.de.txt"):
        (data / name).write_text(name)
    checkpoint = tmp_path / "supernet.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    out = tmp_path / "search"
    argv = [str(data), "--path", str(checkpoint), "--save-dir", str(out), "--cpu", "--batch-size", "8", *SMALL]
    return data, checkpoint, out, argv


BAD = [
    (["--hardware-profile", "7nm"], r"^--hardware-profile: profile='7nm' is neither a shipped profile"),
    (["--hardware-profile", "mine.yaml"], r"^--hardware-profile: profile file 'mine.yaml' not found"),
    (["--cost-bits", "16"], r"^--cost-bits 16 not in --hardware-profile '45nm''s widths"),
    (["--constraint", "energy<=3"], r"metric 'energy' not in allowed values"),
    (["--constraint", "predicted_latency_ms<=3"], r"needs a latency predictor \(--latency-predictor PATH\)"),
    (["--latency-predictor", "SUPERNET"], r"^--latency-predictor: .*supernet.pt is not a readable latency predictor"),
    (["--multi-objective", "energy_mj,joules"], r"^--multi-objective metric\(s\) \['joules'\] not in allowed"),
    (["--population", "10"], r"^population=10 must equal parents \+ mutations \+ crossovers"),
    (["--valid-subset", "test"], r"^DATA '.*data' has no files of --valid-subset 'test'"),
    (["--initial-subnet", "best.yaml"], r"^--initial-subnet 'best.yaml': no such file"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_options_fail_before_loading(setup, extra: List[str], message: str) -> None:
    _, checkpoint, out, argv = setup
    extra = [str(checkpoint) if x == "SUPERNET" else x for x in extra]
    with pytest.raises(ValueError) as err:
        main(argv + extra)
    assert re.search(message, str(err.value)) and "\n" not in str(err.value)
    assert not out.exists()  # nothing written, no rank started


@pytest.mark.parametrize("flag, field", [("--cost-tgt-len", "tgt_len"), ("--cost-beam", "beam")])
def test_non_positive_workload_values_fail_before_loading(setup, flag: str, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^--cost-\* options: Workload.{field} must be a positive integer, got 0$"):
        main(setup[3] + [flag, "0"])
    assert not setup[2].exists()


def test_non_positive_sentence_limit_is_an_argument_error(setup, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(setup[3] + ["--max-valid-sentences", "0"])
    assert exit_.value.code == 2
    assert "argument --max-valid-sentences: must be a positive integer, got 0" in capsys.readouterr().err


def _args(argv: List[str]) -> argparse.Namespace:
    return options.parse_args_and_arch(get_parser(), argv)


def _write_state(argv: List[str]) -> Path:
    """A finished generation of a (fake-fitness) search with the settings ``argv`` would have: its state.json."""
    args = _args(argv)
    constraints, config = _settings(args)
    settings = search_settings(args, load_profile(args.hardware_profile).source)
    state = Path(args.save_dir) / "state.json"
    EvolutionarySearch(TranslationDomain(get_space("tiny")), config, CountingFitness(), fake_metrics, constraints,
                       state_path=state, progress=False, settings=settings).run()
    return state


def test_settings_cover_every_fingerprint_option_and_file_content(setup) -> None:
    data, checkpoint, _, argv = setup
    settings = search_settings(_args(argv + ["--max-valid-sentences", "20"]), load_profile("45nm").source)
    assert set(COST_OPTIONS) <= set(FINGERPRINT_OPTIONS) and set(FINGERPRINT_OPTIONS) <= set(settings)
    assert settings["cost_accounting"] == "streaming" and settings["beam"] == 5
    assert settings["max_valid_sentences"] == 20
    assert settings["path"] == {"file": str(checkpoint.resolve()), "sha256": file_sha256(checkpoint)}
    assert [f["file"] for f in settings["data"]] == sorted(str(p.resolve()) for p in data.iterdir())
    assert settings["hardware_profile"]["name"] == "45nm" and len(settings["hardware_profile"]["sha256"]) == 64


CHANGES = [
    (["--max-valid-sentences", "20"], ["settings.max_valid_sentences: 64 -> 20"]),
    (["--cost-tgt-len", "40", "--hardware-profile", "PROFILE"],
     ["settings.cost_tgt_len: 30 -> 40", 'settings.hardware_profile.name: "45nm" -> "PROFILE"']),
    (["--cost-accounting", "original"], ['settings.cost_accounting: "streaming" -> "original"']),
    (["--objective", "bleu", "--beam", "4"],
     ['settings.objective: "loss" -> "bleu"', "settings.beam: 5 -> 4", 'config.fitness: "loss" -> "bleu"']),
    (["--constraint", "energy_mj<=3"], ["constraints: [] -> [\"energy_mj<=3\"]"]),
    (["CHECKPOINT"], ["settings.path.sha256: "]),
    (["DATA"], ["settings.data: "]),
]


@pytest.mark.parametrize("change, lines", CHANGES, ids=[" ".join(c[0]) for c in CHANGES])
def test_a_changed_setting_is_refused_before_loading(setup, tmp_path: Path, change: List[str],
                                                    lines: List[str]) -> None:
    data, checkpoint, out, argv = setup
    state = _write_state(argv + ["--max-valid-sentences", "64"])
    before = state.read_bytes()
    profile = tmp_path / "45nm_copy.yaml"
    profile.write_text(load_profile("45nm").source and Path(load_profile("45nm").source).read_text())
    if change == ["CHECKPOINT"]:
        checkpoint.write_bytes(b"another supernet")  # same path, new content
        change = []
    elif change == ["DATA"]:
        (data / "valid.en-de.de.bin").write_text("other validation sentences")
        change = []
    change = [str(profile) if x == "PROFILE" else x for x in change]
    with pytest.raises(ValueError) as err:
        main(argv + ["--max-valid-sentences", "64"][: 0 if "--max-valid-sentences" in change else 2] + change)
    message = str(err.value).replace(str(profile), "PROFILE")
    assert "\n" not in message and message.startswith(f"{state} was written by a search with other settings (")
    for line in lines:
        assert line in message
    assert message.endswith("add --restart to start over")
    assert state.read_bytes() == before  # untouched


def _reached_the_checkpoint_load(err: pytest.ExceptionInfo) -> bool:
    return "other settings" not in str(err.value) and any(
        Path(entry.path).name == "fitness.py" and Path(entry.path).parent.name == "search" for entry in err.traceback
    )


def test_restart_removes_every_output_then_starts_over(setup) -> None:
    _, _, out, argv = setup
    state = _write_state(argv)
    for name in OUTPUTS[1:]:
        (out / name).write_text("old")
    (out / "state.json.partial").write_text("half")
    with pytest.raises(Exception) as err:  # passes the checks, removes the outputs, then fails to load
        main(argv + ["--max-valid-sentences", "20", "--restart"])
    assert _reached_the_checkpoint_load(err)
    assert not state.exists() and not list(out.iterdir())


def test_same_settings_pass_the_resume_check(setup) -> None:
    _, _, out, argv = setup
    state = _write_state(argv)
    with pytest.raises(Exception) as err:  # reaches the (failing) checkpoint load
        main(argv + ["--generations", "3"])  # more generations is no change of settings
    assert _reached_the_checkpoint_load(err)
    assert json.loads(state.read_text())["generation"] == 1
