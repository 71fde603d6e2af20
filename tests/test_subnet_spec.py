"""The one resolver of subnet specs (``space.resolve_subnet``): names, inline JSON, files, and its one-line errors."""
import dataclasses
from pathlib import Path

import pytest

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.space import (
    BlockDetails,
    SpaceRecord,
    get_space,
    largest,
    parse_subnet_spec,
    read_space_record,
    resolve_subnet,
    smallest,
)

TINY = get_space("tiny")


def test_names_json_and_files_resolve_to_the_same_subnets(tmp_path: Path) -> None:
    sub = smallest(TINY)
    sub.save(tmp_path / "s.yaml")
    sub.save(tmp_path / "s.json")
    assert resolve_subnet("largest", TINY) == largest(TINY)
    assert resolve_subnet(" smallest ", TINY) == sub
    assert resolve_subnet(sub.to_json(), TINY) == sub
    assert resolve_subnet(str(tmp_path / "s.yaml"), TINY) == sub
    assert resolve_subnet(str(tmp_path / "s.json"), TINY) == sub
    assert parse_subnet_spec("largest") is None and parse_subnet_spec(sub.to_json()) == sub


@pytest.mark.parametrize("spec, message", [
    ("smalest", "--subnet 'smalest': not 'largest', 'smallest', inline JSON or a .json/.yaml/.yml file"),
    ("missing.yaml", "--subnet 'missing.yaml': no such file"),
    ('{"encoder_embed_dim": 1', "--subnet '{\"encoder_embed_dim\": 1': invalid inline JSON"),
    ('{"encoder_embed_dim": 128}', "missing"),
])
def test_bad_specs_fail_in_one_line_naming_the_option(spec: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        resolve_subnet(spec, TINY)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_out_of_space_subnet_names_option_space_and_field(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    largest(get_space("wmt14_en_de")).save(path)
    with pytest.raises(InputError, match=r"^--valid-subnets '.*big.yaml': not in space 'tiny': encoder_embed_dim=1024"):
        resolve_subnet(str(path), TINY, "--valid-subnets")
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="unreadable"):
        resolve_subnet(str(path), TINY)


def test_long_inline_json_is_shortened_in_the_message() -> None:
    text = largest(get_space("wmt14_en_de")).to_json()
    with pytest.raises(InputError) as err:
        resolve_subnet(text, TINY)
    assert text[:60] + "..." in str(err.value) and text not in str(err.value)


# --- the space a subnet file records (space/subnet_file.py) ------------------------------------------------------

COMPACT_DEMO = dataclasses.replace(get_space("demo"), block_details=BlockDetails.COMPACT)


def _searched_file(path: Path, space, header: str = "") -> Path:
    """A subnet file as the search writes it: comment header (fitness, the space record) above the subnet's YAML."""
    path.write_text(f"# loss: 3.2\n{header or SpaceRecord.of(space).header()}\n" + smallest(space).to_yaml())
    return path


def test_a_subnet_file_is_used_in_the_space_it_records(tmp_path: Path) -> None:
    path = _searched_file(tmp_path / "best.yaml", COMPACT_DEMO)
    assert read_space_record(str(path)).space() == COMPACT_DEMO
    assert resolve_subnet(str(path), COMPACT_DEMO) == smallest(COMPACT_DEMO)
    old = tmp_path / "old.yaml"  # without the record (an older file): any space that holds the subnet, as before
    smallest(COMPACT_DEMO).save(old)
    assert read_space_record(str(old)) is None and read_space_record("smallest") is None
    assert resolve_subnet(str(old), get_space("demo")) == smallest(COMPACT_DEMO)


@pytest.mark.parametrize("used, message", [
    (get_space("demo"), "records that it was searched in space 'demo' (block_details 'compact'), not in space "
                        "'demo' (block_details 'original') as used here: use it with --space demo --block-details "
                        "compact"),
    (TINY, "not in space 'tiny' (block_details 'original')"),
])
def test_another_space_than_the_recorded_one_is_refused_in_one_line(tmp_path: Path, used, message: str) -> None:
    path = _searched_file(tmp_path / "best.yaml", COMPACT_DEMO)
    with pytest.raises(InputError) as err:
        resolve_subnet(str(path), used, "--valid-subnets")
    assert str(err.value).startswith(f"--valid-subnets '{path}' ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_changed_space_definition_is_refused_naming_both_hashes(tmp_path: Path) -> None:
    """Same name and block details, another definition (the space was edited since the search)."""
    edited = dataclasses.replace(COMPACT_DEMO, encoder_ffn_dims=(512, 256, 128))
    path = _searched_file(tmp_path / "best.yaml", COMPACT_DEMO)
    with pytest.raises(InputError, match=rf"sha256 {COMPACT_DEMO.sha256()[:12]}, but that space is "
                                         rf"{edited.sha256()[:12]} here: its definition changed since the search"):
        resolve_subnet(str(path), edited)


@pytest.mark.parametrize("line, message", [
    ('# search_space: {"name": "demo"', "invalid '# search_space:' line: "),
    ('# search_space: {"name": "demo", "sha256": "x"}', "keys ['name', 'sha256'], expected ['name', 'block_details'"),
    ('# search_space: [1]', "not a JSON object"),
])
def test_an_invalid_record_is_one_line_naming_the_file(tmp_path: Path, line: str, message: str) -> None:
    path = _searched_file(tmp_path / "best.yaml", COMPACT_DEMO, header=line)
    with pytest.raises(InputError) as err:
        resolve_subnet(str(path), COMPACT_DEMO)
    assert f"--subnet '{path}': {path}: " in str(err.value) and message in str(err.value)
