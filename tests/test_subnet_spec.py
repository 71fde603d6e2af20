"""The one resolver of subnet specs (``space.resolve_subnet``): names, inline JSON, files, and its one-line errors."""
from pathlib import Path

import pytest

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.space import get_space, largest, parse_subnet_spec, resolve_subnet, smallest

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
