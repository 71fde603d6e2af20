"""Bad inputs, as a table: each command, and the one line on stderr it must print (non-zero exit, no traceback).

The plugin's console scripts run in this process through their installed entry points (as the shell would
call them, argv included); fairseq's own commands (``fairseq-train``, ``fairseq-generate``) run as
subprocesses, where the plugin's exception hook turns an input error into one line. Every command fails
before doing any work: no update runs, no checkpoint or output file is written.
"""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from fairseq_shiftadd.latency import TimingProtocol, collect_latency_dataset
from fairseq_shiftadd.space import get_space, largest, smallest

REPO = Path(__file__).resolve().parents[1]
WORDS = "a man a woman two dogs one cat runs sits on the grass in a park with a red ball".split()

# (id, command with placeholders, the message its one error line must contain)
# {data}: a binarised En-De toy corpus; {tmp}: a fresh directory; {bad}: a file that is no checkpoint;
# {ck}: a file standing for a checkpoint; {wide}: a wmt14_en_de subnet (outside the tiny space);
# {lat}: a latency CSV measured with --vocab-size 20; {spm_ref}: a sentencepiece-encoded reference.
TRAIN = "fairseq-train {data} --user-dir fairseq_shiftadd --optimizer adam --lr 1e-3 --max-tokens 512 " \
        "--max-update 1 --save-dir {tmp}/save --num-workers 0 "
SUPERNET = TRAIN + "--task shiftadd_translation --arch shiftadd_supernet_tiny "
BAD_INPUTS = [
    ("valid-subnets typo", SUPERNET + "--valid-subnets largest,smalest",
     "--valid-subnets 'smalest': not 'largest', 'smallest', inline JSON or a .json/.yaml/.yml file"),
    ("valid-subnets out of space", SUPERNET + "--valid-subnets largest,{wide}",
     "wide.yaml': not in space 'tiny': encoder_embed_dim=512 not in allowed values (128, 64)"),
    ("subnet missing file", SUPERNET + "--subnet {tmp}/nowhere.yaml", "nowhere.yaml': no such file"),
    ("unknown space", TRAIN + "--task translation --arch shiftadd_transformer --space nope --subnet largest",
     "space name='nope' not in allowed values"),
    ("corrupt checkpoint, generate", "fairseq-generate {data} --user-dir fairseq_shiftadd --path {bad} --beam 1",
     "bad.pt: not a readable checkpoint"),
    ("extract over its input",
     "fairseq-shiftadd-extract-subnet --checkpoint {ck} --subnet largest --output {ck}",
     "--output {ck} is one of the inputs: write to another path"),
    ("extract over an existing output",
     "fairseq-shiftadd-extract-subnet --checkpoint {ck} --subnet largest --output {bad}",
     "--output {bad} exists: pass --force to replace it"),
    ("extract bad subnet", "fairseq-shiftadd-extract-subnet --checkpoint {bad} --subnet smalest --output {tmp}/o.pt",
     "--subnet 'smalest': not 'largest', 'smallest'"),
    ("extract corrupt checkpoint",
     "fairseq-shiftadd-extract-subnet --checkpoint {bad} --subnet largest --output {tmp}/o.pt",
     "bad.pt: not a readable checkpoint"),
    ("average corrupt checkpoint", "fairseq-shiftadd-average-checkpoints --inputs {bad} {bad} --output {tmp}/avg.pt",
     "bad.pt: not a readable checkpoint"),
    ("average over an input", "fairseq-shiftadd-average-checkpoints --inputs {ck} {bad} --output {ck}",
     "--output {ck} is one of the inputs"),
    ("search without batching", "fairseq-shiftadd-search {data} --path {ck} --save-dir {tmp}/s",
     "set --max-tokens or --batch-size"),
    ("search bad constraint", "fairseq-shiftadd-search {data} --path {ck} --save-dir {tmp}/s --max-tokens 512 "
     "--constraint energy_mj<=x", "energy_mj<=x"),
    ("rerank without a search", "fairseq-shiftadd-rerank {data} --search-dir {tmp}/none --recipe {ck} "
     "--save-dir {tmp}/r", "candidates.csv: no such file (run fairseq-shiftadd-search with --save-dir"),
    ("score encoded reference",
     "fairseq-shiftadd-score --hypotheses {spm_ref}.txt --reference {spm_ref} --target-lang de",
     "2 of 2 reference lines hold sentencepiece pieces"),
    ("cost bad subnet", "fairseq-shiftadd-cost --space tiny --subnet smalest", "--subnet 'smalest': not 'largest'"),
    ("latency resume with another workload",
     "fairseq-shiftadd-latency-dataset --space tiny --samples 2 --out {lat} --src-len 4 --tgt-len 3 --warmup 0 "
     "--runs 1 --vocab-size 30 --threads 1", "vocab_size 20 in the file, 30 now"),
    ("latency bad device",
     "fairseq-shiftadd-latency-dataset --space tiny --samples 1 --out {tmp}/lat.csv --device tpu",
     "device='tpu' not supported"),
    ("predictor missing data",
     "fairseq-shiftadd-train-latency-predictor --data {tmp}/none.csv --space tiny --out {tmp}/p.pt",
     "none.csv"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The placeholders of :data:`BAD_INPUTS` (a toy corpus binarised by fairseq-preprocess, ...)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    raw = root / "raw"
    raw.mkdir()
    for split, count in (("train", 40), ("valid", 10)):
        for lang, shift in (("en", 0), ("de", 3)):
            lines = [" ".join(WORDS[(i + shift + j) % len(WORDS)] for j in range(4 + i % 5)) for i in range(count)]
            (raw / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    subprocess.run(
        ["fairseq-preprocess", "--source-lang", "en", "--target-lang", "de", "--trainpref", raw / "train",
         "--validpref", raw / "valid", "--destdir", root / "data", "--joined-dictionary", "--workers", "1"],
        check=True, capture_output=True,
    )
    (root / "bad.pt").write_bytes(b"\x80\x02not a checkpoint\xff\xfe")
    (root / "ck.pt").write_bytes(b"stands for a checkpoint")
    smallest(get_space("wmt14_en_de")).save(root / "wide.yaml")
    (root / "ref.de").write_text("▁Ein ▁Hund\n▁Zwei ▁Katzen\n", encoding="utf-8")
    (root / "ref.de.txt").write_text("Ein Hund\nZwei Katzen\n", encoding="utf-8")
    quick = TimingProtocol(src_len=4, tgt_len=3, warmup=0, runs=1)
    collect_latency_dataset(get_space("tiny"), 1, root / "lat.csv", quick, vocab_size=20, progress=False)
    return {"data": root / "data", "bad": root / "bad.pt", "ck": root / "ck.pt", "wide": root / "wide.yaml",
            "lat": root / "lat.csv", "spm_ref": root / "ref.de"}


@pytest.mark.parametrize("command, message", [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_prints_one_line(command: str, message: str, files: dict, tmp_path: Path, capsys) -> None:
    values = {**files, "tmp": tmp_path}
    argv = command.format(**values).split()
    message = message.format(**values)
    scripts = {e.name: e for e in entry_points(group="console_scripts")}
    if argv[0].startswith("fairseq-shiftadd-"):
        sys_argv, sys.argv = sys.argv, argv
        try:
            with pytest.raises(SystemExit) as exit_info:
                scripts[argv[0]].load()(argv[1:])
        finally:
            sys.argv = sys_argv
        code, stderr = exit_info.value.code, capsys.readouterr().err
    else:
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
        code, stderr = result.returncode, result.stderr
    assert code not in (0, None), stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.rstrip("\n").splitlines()  # fairseq's logging and warnings may come first
    errors = [line for line in lines if ": error: " in line]
    assert errors == [lines[-1]], stderr[-3000:]  # one error line, the last one
    assert errors[0].startswith(f"{argv[0]}: error: ") and message in errors[0], errors[0]
    if argv[0].startswith("fairseq-shiftadd-"):  # our own scripts print nothing else ...
        usage = [line for line in lines if line.startswith("usage:")]
        assert len(lines) == 1 + len(usage), lines
        # ... but the synopsis line before an argument error (not fairseq's full usage dump)
        assert len(usage) <= 1 and all(line.endswith("(--help lists every option)") for line in usage), usage
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written (fairseq makes --save-dir)


def test_debug_flag_shows_the_traceback(capsys) -> None:
    scripts = {e.name: e for e in entry_points(group="console_scripts")}
    with pytest.raises(ValueError, match="smalest"):
        scripts["fairseq-shiftadd-cost"].load()(["--space", "tiny", "--subnet", "smalest", "--debug"])


def test_supernet_trains_a_named_subnet(files: dict, tmp_path: Path) -> None:
    """``--subnet largest`` with the supernet crashed (FileNotFoundError: 'largest'): the model owns the flag."""
    argv = (SUPERNET + "--subnet smallest --no-epoch-checkpoints").format(**files, tmp=tmp_path).split()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loss_subnet" in result.stdout + result.stderr  # the fixed subnet alone is validated
    assert (tmp_path / "save" / "checkpoint_last.pt").is_file()
    assert largest(get_space("tiny")) != smallest(get_space("tiny"))
