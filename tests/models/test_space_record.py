"""Checkpoints carry the space they were built from (``space_definition`` + ``space_hash`` in the model config).

Models are built as fairseq builds them from a saved checkpoint config (``fairseq.models.build_model`` with
``from_checkpoint=True``, the config's ``model`` node under its parent), so the merged-copy and named-arch paths
are the real ones.
"""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from fairseq.models import build_model
from omegaconf import OmegaConf
from torch.testing import assert_close

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.models.space_record import checkpoint_space
from fairseq_shiftadd.models.subnet import SubnetModelConfig
from fairseq_shiftadd.models.supernet import SupernetConfig
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import SPACES, BlockDetails, LayerConfig, SpaceRecord, SubnetConfig

TINY = SPACES["tiny"]
EDITED = dataclasses.replace(TINY, kernel_sizes=(5, 7))  # the named space as it was when the checkpoint was saved
RECORD = ("space_definition", "space_hash")
SUB = SubnetConfig(
    encoder_embed_dim=128,
    decoder_embed_dim=128,
    encoder=(LayerConfig(BlockType.LIGHTWEIGHT_CONV, 256, 2, OpKind.MULT),
             LayerConfig(BlockType.ATTENTION_LIGHTWEIGHT_ADD, 512, 4, OpKind.ADD)),
    decoder=(LayerConfig(BlockType.ATTENTION_LIGHTWEIGHT_CONV, 256, 4, OpKind.SHIFT, cross_heads=2, enc_dec_span=-1),),
)


def _config(kind: str, **fields) -> dict:
    """A complete saved model config of ``kind`` (``subnet``: shiftadd_transformer; ``supernet``: a named arch)."""
    config, name = (SubnetModelConfig, "shiftadd_transformer") if kind == "subnet" else (
        SupernetConfig, "shiftadd_supernet_tiny")
    node = OmegaConf.to_container(OmegaConf.structured(config(space="tiny", subnet=SUB.to_json())), enum_to_str=True)
    return {**node, "_name": name, **fields}


def _build(saved: dict, task):
    """The model fairseq builds from the saved model config ``saved``, and the config it would save then."""
    top = OmegaConf.create({"model": copy.deepcopy(saved)})
    model = build_model(top.model, task, from_checkpoint=True)
    return model.eval(), OmegaConf.to_container(top, enum_to_str=True)["model"]


def _stripped(saved: dict, names) -> dict:
    return {key: value for key, value in saved.items() if key not in names}


def _outputs(model, builders, task):
    torch.manual_seed(0)
    with torch.no_grad():
        return model(*builders.token_batch(task, seed=3))[0]


@pytest.mark.parametrize("kind", ["subnet", "supernet"])
def test_checkpoint_builds_from_its_record_after_the_named_space_changes(kind, task, builders, monkeypatch):
    monkeypatch.setitem(SPACES, "tiny", EDITED)
    trained, saved = _build(_config(kind), task)
    assert saved["space_hash"] == EDITED.sha256() and saved["block_details"] == "original"
    monkeypatch.setitem(SPACES, "tiny", TINY)  # the named space is edited after the checkpoint was saved
    loaded, _ = _build(saved, task)
    assert loaded.space == EDITED
    loaded.load_state_dict(trained.state_dict())
    assert_close(_outputs(loaded, builders, task), _outputs(trained, builders, task), rtol=0, atol=0)


def test_a_tampered_definition_is_refused(task, monkeypatch):
    monkeypatch.setitem(SPACES, "tiny", EDITED)
    _, saved = _build(_config("subnet"), task)
    saved["space_definition"] = saved["space_definition"].replace('"kernel_sizes": [5, 7]', '"kernel_sizes": [3, 7]')
    with pytest.raises(InputError, match=r"space_definition of space 'tiny' does not match its space_hash"):
        _build(saved, task)


@pytest.mark.parametrize("kind", ["subnet", "supernet"])
def test_a_checkpoint_without_the_record_and_block_details_loads_as_compact(kind, task, builders):
    """An old checkpoint (no record, no ``block_details``: trained with the compact details) computes as before."""
    trained, saved = _build(_config(kind, block_details="compact"), task)
    assert trained.space.block_details is BlockDetails.COMPACT
    loaded, _ = _build(_stripped(saved, RECORD + ("block_details",)), task)
    assert loaded.space == dataclasses.replace(TINY, block_details=BlockDetails.COMPACT)
    loaded.load_state_dict(trained.state_dict())
    assert_close(_outputs(loaded, builders, task), _outputs(trained, builders, task), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["subnet", "supernet"])
def test_a_checkpoint_without_the_record_of_a_changed_space_is_refused_in_one_line(kind, task, monkeypatch):
    monkeypatch.setitem(SPACES, "tiny", EDITED)
    trained, saved = _build(_config(kind), task)
    monkeypatch.setitem(SPACES, "tiny", TINY)
    loaded, _ = _build(_stripped(saved, RECORD), task)
    with pytest.raises(InputError, match=r"does not fit the model built from space 'tiny' .*kernel.* has shape "
                                         r"\(\d+, 5\) in the checkpoint, \(\d+, 3\) in the model") as err:
        loaded.load_state_dict(trained.state_dict())
    assert "\n" not in str(err.value)


def test_checkpoint_space_reads_the_record_or_the_legacy_details(task, tmp_path, monkeypatch):
    monkeypatch.setitem(SPACES, "tiny", EDITED)
    _, saved = _build(_config("supernet"), task)
    monkeypatch.setitem(SPACES, "tiny", TINY)
    torch.save({"cfg": {"model": saved}, "model": {}}, tmp_path / "new.pt")
    torch.save({"cfg": {"model": _stripped(saved, RECORD + ("block_details",))}, "model": {}}, tmp_path / "old.pt")
    torch.save({"cfg": {"model": {"_name": "transformer"}}, "model": {}}, tmp_path / "plain.pt")
    assert checkpoint_space(tmp_path / "new.pt") == EDITED
    assert checkpoint_space(tmp_path / "old.pt") == dataclasses.replace(TINY, block_details=BlockDetails.COMPACT)
    with pytest.raises(InputError, match="plain.pt: not a checkpoint of a shiftadd model"):
        checkpoint_space(tmp_path / "plain.pt")


@pytest.mark.parametrize("kind", ["subnet", "supernet"])
def test_a_searched_subnet_file_builds_only_in_the_space_it_records(kind, task, tmp_path):
    """``fairseq-train --subnet best.yaml``: a model config of other block details than the file records (the
    search's ``# search_space:`` line) is refused in one line naming both; fairseq's configs do not tell a default
    from an option given, so the models do not adopt the record: the options must match it."""
    compact = dataclasses.replace(TINY, block_details=BlockDetails.COMPACT)
    best = tmp_path / "best.yaml"
    best.write_text(f"# loss: 3.0\n{SpaceRecord.of(compact).header()}\n" + SUB.to_yaml())
    with pytest.raises(InputError, match=r"^--subnet '.*best.yaml' records that it was searched in space 'tiny' "
                                         r"\(block_details 'compact'\), not in space 'tiny' \(block_details "
                                         r"'original'\) as used here: use it with --space tiny --block-details "
                                         r"compact$"):
        _build(_config(kind, subnet=str(best)), task)
    model, _ = _build(_config(kind, subnet=str(best), block_details="compact"), task)
    assert model.space == compact and model.subnet == SUB
