"""The GPU checks' inputs (scripts/gpu_check.sh and its two subnets), checked without a GPU."""
import subprocess
from pathlib import Path

import pytest

from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import SubnetConfig, check, get_space

REPO = Path(__file__).resolve().parents[1]
SUBNETS = REPO / "examples" / "multi30k_en_de" / "subnets"
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def test_the_add_hybrid_holds_every_multiplication_free_operator_and_the_counterpart_none():
    """gpu_add_hybrid.yaml puts add and shift-add mixers and add and shift FFNs on the GPU; gpu_mult_baseline.yaml
    has its widths and depths with attention and mult FFNs only. Both are subnets of the recipe's space."""
    space = get_space("iwslt14_de_en")
    hybrid, counterpart = (SubnetConfig.load(SUBNETS / name) for name in ("gpu_add_hybrid.yaml",
                                                                          "gpu_mult_baseline.yaml"))
    check(space, hybrid)
    check(space, counterpart)
    layers = hybrid.encoder + hybrid.decoder
    assert {layer.ffn_op for layer in layers} >= {OpKind.ADD, OpKind.SHIFT}
    assert {BlockType.LIGHTWEIGHT_ADD, BlockType.LIGHTWEIGHT_SHIFTADD} <= {layer.block for layer in layers}
    assert {BlockType.ATTENTION_LIGHTWEIGHT_ADD} <= {layer.block for layer in hybrid.decoder}
    twins = counterpart.encoder + counterpart.decoder
    assert [len(hybrid.encoder), len(hybrid.decoder)] == [len(counterpart.encoder), len(counterpart.decoder)]
    assert [layer.ffn_dim for layer in layers] == [layer.ffn_dim for layer in twins]
    assert all((layer.block, layer.ffn_op) == (BlockType.ATTENTION, OpKind.MULT) for layer in twins)


@pytest.mark.parametrize("args, message", [
    ([], "usage: bash scripts/gpu_check.sh OUT DATA_BIN"),
    (["OUT", "DATA", "tests", "bogus"],
     "unknown stage 'bogus' (stages: tests adder ops ops_large fp16 fp16_mult recipe ranking)"),
    (["OUT", "/nonexistent", "fp16"], "no fairseq data-bin (dict.en.txt) at /nonexistent"),
], ids=["no_arguments", "unknown_stage", "missing_data"])
def test_bad_arguments_get_one_line_and_run_nothing(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "OUT" else a for a in args]
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1 and done.stdout == ""
    assert not (tmp_path / "OUT").exists()


def test_the_kit_refuses_a_missing_multi30k_in_one_line(tmp_path):
    """scripts/gpu_kit.sh (wheels and data for the GPU machine) checks its data before it installs or downloads."""
    env = {"PATH": "/usr/bin:/bin", "MULTI30K_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_kit.sh")], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"no Multi30k at {tmp_path / 'nowhere'} (set MULTI30K_DIR)\n"
