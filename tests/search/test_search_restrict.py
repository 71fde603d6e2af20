"""The search's ``--restrict``: a sub-space of the supernet's space searched with the same supernet."""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.search.cli import _main as search_main  # unwrapped: raises instead of exiting
from fairseq_shiftadd.space import SubnetConfig, check, get_space

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("restriction, message", [
    ("blocks", r"^--restrict: restriction 'blocks': expected FIELD=VALUE"),
    ("colour=red", r"^--restrict: restriction 'colour': not a gene field"),
])
def test_bad_restriction_is_one_line_before_loading(tmp_path, restriction, message):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("valid.en-de.en.bin", "dict.en.txt"):
        (data / name).write_text(name)
    fake = tmp_path / "supernet.pt"
    fake.write_bytes(b"not loaded")  # the option is refused before the checkpoint is read
    with pytest.raises(ValueError) as err:
        search_main([str(data), "--path", str(fake), "--save-dir", str(tmp_path / "out"), "--batch-size", "8",
                     "--cpu", "--restrict", restriction])
    assert re.search(message, str(err.value)) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_restricted_search_stays_in_the_subspace(run_cli, multi30k_en_de: Path, tiny_supernet: Path, tmp_path: Path):
    common = ["fairseq-shiftadd-search", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd", "--path",
              str(tiny_supernet), "--save-dir", str(tmp_path), "--cpu", "--batch-size", "32", "--max-valid-sentences",
              "32", "--seed", "3", "--population", "6", "--parents", "2", "--mutations", "2", "--crossovers", "2",
              "--generations", "2"]
    outside = subprocess.run([shutil.which(common[0]), *common[1:], "--restrict", "ffn_dims=999"], cwd=REPO,
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert outside.returncode != 0
    assert outside.stderr.strip().splitlines()[-1] == ("fairseq-shiftadd-search: error: --restrict: restriction "
                                                       "encoder_ffn_dims='999' not in space 'tiny''s allowed values "
                                                       "(512, 256)")
    run_cli(*common, "--restrict", "blocks=attention", "--restrict", "ffn_ops=mult")
    with open(tmp_path / "candidates.csv", newline="") as f:
        subs = [SubnetConfig.from_json(row["subnet"]) for row in csv.DictReader(f)]
    assert len(subs) >= 6
    for sub in subs + [SubnetConfig.load(tmp_path / "best.yaml")]:
        check(get_space("tiny"), sub)
        assert all(layer.block is BlockType.ATTENTION and layer.ffn_op is OpKind.MULT
                   for layer in sub.encoder + sub.decoder)
