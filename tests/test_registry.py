"""Registration tables, what fairseq resolves from them, every registered arch parsed and built, package boundaries.

The arch list is read from fairseq's own registry after the plugin is imported, so a newly registered arch is
covered without editing this file.
"""
import subprocess
import sys
from argparse import Namespace
from types import SimpleNamespace

import pytest
import torch
from fairseq import options
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY

from fairseq_shiftadd import registry
from fairseq_shiftadd.space import SPACES, get_space, smallest

ROWS = (
    [("task", name, cls, config) for name, (cls, config) in registry.TASKS.items()]
    + [("model", name, cls, config) for name, (cls, config) in registry.MODELS.items()]
    + [("criterion", name, cls, config) for name, (cls, config) in registry.CRITERIONS.items()]
)
OUR_ARCHS = sorted(arch for arch, cls in ARCH_MODEL_REGISTRY.items() if cls.__module__.startswith("fairseq_shiftadd."))


@pytest.mark.parametrize("kind, name, cls, config", ROWS, ids=[row[1] for row in ROWS])
def test_every_row_is_registered_as_our_class(kind: str, name: str, cls: type, config: type) -> None:
    """fairseq returns an *existing* class for a reused task/model name: check the name maps to ours."""
    table = {"task": TASK_REGISTRY, "model": MODEL_REGISTRY, "criterion": CRITERION_REGISTRY}[kind]
    assert name.startswith("shiftadd_")
    assert table[name] is cls
    assert getattr(cls, "__dataclass") is config


@pytest.mark.parametrize("arch", sorted(registry.ARCHS))
def test_every_named_arch_belongs_to_our_model(arch: str) -> None:
    model_name, fill_defaults = registry.ARCHS[arch]
    assert arch.startswith("shiftadd_")
    assert ARCH_MODEL_REGISTRY[arch] is MODEL_REGISTRY[model_name]
    assert ARCH_CONFIG_REGISTRY[arch] is fill_defaults


def test_fairseq_sees_exactly_our_tables() -> None:
    """Every arch fairseq resolves to our models is a named arch of the table or a model's own name."""
    assert set(OUR_ARCHS) == set(registry.ARCHS) | set(registry.MODELS)


@pytest.mark.parametrize("name", sorted(registry.ARCHS))
def test_arch_fills_only_absent_fields(name: str) -> None:
    _, fill_defaults = registry.ARCHS[name]
    args = Namespace()
    fill_defaults(args)
    assert args.space in SPACES and name.endswith(args.space)
    given = Namespace(space="tiny", dropout=0.5)
    fill_defaults(given)
    assert (given.space, given.dropout) == ("tiny", 0.5)


def _task_stand_in() -> SimpleNamespace:
    dictionary = Dictionary()
    for i in range(20):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)


@pytest.mark.parametrize("arch", OUR_ARCHS)
def test_every_registered_arch_parses_and_builds(arch: str) -> None:
    """``fairseq-train --arch ARCH`` parses, and the model it names builds from the parsed configuration (as
    fairseq-train builds it: args -> OmegaConf) and runs a batch.

    The wide WMT / IWSLT spaces are built at the tiny space's widths (``--space tiny``) to keep the test fast; that
    the arch selects its own space is checked from the parsed args (and by :func:`test_arch_fills_only_absent_fields`).
    """
    own = options.parse_args_and_arch(options.get_training_parser(), ["DATA", "--arch", arch])
    space = getattr(own, "space", None)
    if arch in registry.ARCHS:
        assert space == arch.removeprefix("shiftadd_supernet_")
    argv = ["DATA", "--arch", arch, "--space", "tiny"]
    if ARCH_MODEL_REGISTRY[arch] is MODEL_REGISTRY["shiftadd_transformer"]:
        argv += ["--subnet", "smallest"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    assert args.arch == arch and args.space == "tiny"
    task = _task_stand_in()
    torch.manual_seed(0)
    cfg = convert_namespace_to_omegaconf(args)
    model = ARCH_MODEL_REGISTRY[arch].build_model(cfg.model, task).eval()
    dictionary = task.source_dictionary
    src = torch.tensor([[5, 6, 7, dictionary.eos()]])
    prev = torch.tensor([[dictionary.eos(), 8, 9]])
    with torch.no_grad():
        logits = model(src, torch.tensor([4]), prev)[0]
    assert logits.shape == (1, 3, len(dictionary)) and torch.isfinite(logits).all()
    if ARCH_MODEL_REGISTRY[arch] is MODEL_REGISTRY["shiftadd_transformer"]:
        assert model.encoder.subnet == smallest(get_space("tiny"))


def test_ops_and_space_import_without_fairseq() -> None:
    script = (
        "import sys; sys.modules['fairseq'] = None\n"
        "import fairseq_shiftadd.ops, fairseq_shiftadd.space\n"
        "assert 'fairseq_shiftadd.registry' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
