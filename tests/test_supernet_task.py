"""The supernet translation task: subnet schedule, and a real supernet run on Multi30k En-De.

The end-to-end run is the session's ``trained_supernet`` (tests/conftest.py: ``fairseq-train --task
shiftadd_translation`` on the tiny supernet for 180 updates); these tests check that the validation loss of both
the largest and the smallest subnet goes down, export a subnet (:func:`extract_checkpoint`, the console script's
body; the script itself runs in tests/test_bad_inputs.py) and decode it with ``fairseq-generate``.
"""
import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.extract import extract_checkpoint
from fairseq_shiftadd.space import check, get_space, largest, smallest
from fairseq_shiftadd.tasks.supernet_translation import SupernetTranslationConfig, SupernetTranslationTask

TINY = get_space("tiny")


def _task(**overrides) -> SupernetTranslationTask:
    cfg = SupernetTranslationConfig(seed=7, **overrides)  # seed set explicitly: II(...) is unresolved here
    return SupernetTranslationTask(cfg, Dictionary(), Dictionary())


def test_one_subnet_per_update_seeded_by_update_number() -> None:
    task, model = _task(), SimpleNamespace(space=TINY)
    first = [task.train_subnets(model, update) for update in range(20)]
    again = [_task().train_subnets(model, update) for update in range(20)]
    assert first == again  # every rank / micro-batch of an update trains the same subnet
    assert all(len(subs) == 1 for subs in first)
    assert len({subs[0] for subs in first}) > 10  # different updates, different subnets
    for subs in first:
        check(TINY, subs[0])
    other_seed = SupernetTranslationTask(SupernetTranslationConfig(seed=8), Dictionary(), Dictionary())
    assert [other_seed.train_subnets(model, u) for u in range(20)] != first


def test_sandwich_and_fixed_subnet() -> None:
    model = SimpleNamespace(space=TINY)
    subs = _task(sandwich=True).train_subnets(model, 3)
    assert subs[:2] == [largest(TINY), smallest(TINY)] and len(subs) == 3


def test_operator_sandwich_adds_the_largest_net_with_random_operators() -> None:
    model = SimpleNamespace(space=TINY)
    task = _task(sandwich=True, sandwich_operators=True)
    per_update = [task.train_subnets(model, update) for update in range(30)]
    assert per_update == [task.train_subnets(model, update) for update in range(30)]  # the same on every rank
    big = largest(TINY)
    hybrids = []
    for update, subs in enumerate(per_update):
        assert subs[:3] == _task(sandwich=True).train_subnets(model, update)  # the sandwich itself is unchanged
        hybrid = subs[3]
        check(TINY, hybrid)
        assert [len(hybrid.encoder), len(hybrid.decoder)] == [len(big.encoder), len(big.decoder)]
        assert (hybrid.encoder_embed_dim, hybrid.decoder_embed_dim) == (big.encoder_embed_dim, big.decoder_embed_dim)
        for mine, theirs in zip(hybrid.encoder + hybrid.decoder, big.encoder + big.decoder):
            assert dataclasses.replace(mine, block=theirs.block, ffn_op=theirs.ffn_op) == theirs  # sizes kept
        hybrids.append(hybrid)
    assert {layer.ffn_op for h in hybrids for layer in h.encoder} == set(TINY.ffn_ops)
    assert {layer.block for h in hybrids for layer in h.encoder} == set(TINY.encoder_blocks)


def test_operator_sandwich_needs_the_sandwich() -> None:
    with pytest.raises(InputError, match="--sandwich-operators.*give --sandwich"):
        _task(sandwich_operators=True)


@pytest.mark.parametrize("spec", ["smallest", smallest(TINY).to_json()])
def test_fixed_subnet_is_the_models_subnet(spec: str) -> None:
    """``--subnet`` has one owner, the model: the task trains and validates the subnet the model resolved."""
    task = _task()
    model = task.build_model(_supernet_cfg(subnet=spec))
    assert model.subnet == smallest(TINY)
    assert task.train_subnets(model, 5) == [smallest(TINY)]
    assert task.valid_subnets(model) == [("subnet", smallest(TINY))]
    assert "subnet" not in SupernetTranslationConfig.__dataclass_fields__


def _supernet_cfg(**fields):
    from omegaconf import OmegaConf, open_dict

    from fairseq_shiftadd.models.supernet import SupernetConfig

    cfg = OmegaConf.structured(SupernetConfig(space="tiny", **fields))
    with open_dict(cfg):
        cfg._name = "shiftadd_supernet"
    return cfg


def test_valid_subnets_names_and_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    smallest(TINY).save(path)
    task = _task(valid_subnets=f"largest, {path}")
    assert task.valid_subnets(SimpleNamespace(space=TINY)) == [("largest", largest(TINY)), ("mine", smallest(TINY))]
    with pytest.raises(ValueError, match="valid-subnets"):
        _task(valid_subnets=" , ")


def test_valid_subnets_checked_when_task_and_model_are_set_up(tmp_path: Path) -> None:
    """A typo fails at task set-up, an out-of-space file when the model is built: before any update."""
    with pytest.raises(InputError, match=r"--valid-subnets 'smalest': not 'largest', 'smallest'"):
        _task(valid_subnets="largest,smalest")
    wide = smallest(get_space("wmt14_en_de"))
    wide.save(tmp_path / "wide.yaml")
    task = _task(valid_subnets=f"largest,{tmp_path / 'wide.yaml'}")
    with pytest.raises(InputError, match=r"--valid-subnets '.*wide.yaml': not in space 'tiny': encoder_embed_dim"):
        task.build_model(_supernet_cfg())


def test_supernet_loss_goes_down_for_largest_and_smallest(trained_supernet: Path) -> None:
    valid = json.loads((trained_supernet / "valid.json").read_text())
    assert len(valid) >= 3, valid
    for name in ("largest", "smallest"):
        losses = [float(v[f"valid_loss_{name}"]) for v in valid]
        assert losses[-1] < losses[0] - 0.5, (name, losses)
    assert float(valid[-1]["valid_loss"]) == float(valid[-1]["valid_loss_largest"])


def test_extracted_subnet_generates(trained_supernet: Path, multi30k_en_de: Path, tmp_path: Path, run_cli) -> None:
    subnet = smallest(TINY)
    (tmp_path / "sub.yaml").write_text(subnet.to_yaml())
    output = tmp_path / "subnet.pt"
    assert extract_checkpoint(trained_supernet / "checkpoint_best.pt", str(tmp_path / "sub.yaml"), output) == subnet
    saved = torch.load(output, weights_only=False)
    assert saved["cfg"]["model"]["_name"] == "shiftadd_transformer"
    supernet_params = torch.load(trained_supernet / "checkpoint_best.pt", weights_only=False)["model"]
    assert sum(t.numel() for t in saved["model"].values()) < sum(t.numel() for t in supernet_params.values())
    out = run_cli("fairseq-generate", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd", "--path", str(output),
                  "--gen-subset", "valid", "--max-sentences", "128", "--beam", "2", "--max-len-b", "10",
                  "--remove-bpe", "sentencepiece")
    sentences = len((multi30k_en_de.parent / "raw" / "valid.de").read_text(encoding="utf-8").splitlines())
    assert len([line for line in out.splitlines() if line.startswith("H-")]) == sentences
    assert re.search(r"BLEU4 = [\d.]+", out)


def test_checkpoint_older_than_the_space_record_and_other_fields_loads(trained_supernet: Path, tmp_path: Path) -> None:
    """A supernet checkpoint written before the space record, the block-detail ints, ``--shift-weights`` and
    ``--quant-bits`` existed builds from the named space as before; without ``block_details`` too it is taken as
    trained with the compact details, so this one (trained with the original's) is refused in one line."""
    from fairseq_shiftadd.cli_errors import InputError
    from fairseq_shiftadd.extract import extract_checkpoint
    from fairseq_shiftadd.models.supernet import SupernetConfig

    added = ("space_definition", "space_hash", "two_branch_qkv_dim", "lightweight_kernel_heads",
             "two_branch_kernel_heads", "shift_weights", "quant_bits")
    assert set(added) | {"block_details"} <= {f.name for f in dataclasses.fields(SupernetConfig)}
    state = torch.load(trained_supernet / "checkpoint_best.pt", weights_only=False)
    assert state["cfg"]["model"]["block_details"] == "original" and state["cfg"]["model"]["space_definition"]
    for name in added:
        del state["cfg"]["model"][name]
    torch.save(state, tmp_path / "old.pt")
    exported = {}
    for name, checkpoint in (("new", trained_supernet / "checkpoint_best.pt"), ("old", tmp_path / "old.pt")):
        extract_checkpoint(checkpoint, "largest", tmp_path / f"{name}_sub.pt")
        exported[name] = torch.load(tmp_path / f"{name}_sub.pt", weights_only=False)["model"]
    assert exported["old"].keys() == exported["new"].keys()
    assert all(torch.equal(exported["old"][k], exported["new"][k]) for k in exported["new"])
    del state["cfg"]["model"]["block_details"]
    torch.save(state, tmp_path / "older.pt")
    with pytest.raises(InputError, match=r"does not fit the model built from space 'tiny' \(block_details 'compact'\)"):
        extract_checkpoint(tmp_path / "older.pt", "largest", tmp_path / "older_sub.pt")
    assert not (tmp_path / "older_sub.pt").exists()


def test_extract_rejects_non_supernet_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        extract_checkpoint(tmp_path / "missing.pt", "largest", tmp_path / "out.pt")
    torch.save({"cfg": {"model": {"_name": "transformer"}}, "model": {}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a shiftadd_supernet checkpoint"):
        extract_checkpoint(tmp_path / "plain.pt", "largest", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
