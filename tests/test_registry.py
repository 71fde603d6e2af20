"""Registration tables and package boundaries."""
import subprocess
import sys

import pytest
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY

from fairseq_shiftadd import registry

ROWS = (
    [("task", name, cls) for name, (cls, _) in registry.TASKS.items()]
    + [("model", name, cls) for name, (cls, _) in registry.MODELS.items()]
    + [("criterion", name, cls) for name, (cls, _) in registry.CRITERIONS.items()]
)


@pytest.mark.parametrize("kind, name, cls", ROWS, ids=[row[1] for row in ROWS])
def test_every_row_is_registered_as_our_class(kind: str, name: str, cls: type) -> None:
    """fairseq returns an *existing* class for a reused task/model name: check the name maps to ours."""
    table = {"task": TASK_REGISTRY, "model": MODEL_REGISTRY, "criterion": CRITERION_REGISTRY}[kind]
    assert name.startswith("shiftadd_")
    assert table[name] is cls


@pytest.mark.parametrize("arch", sorted(registry.ARCHS))
def test_every_arch_belongs_to_our_model(arch: str) -> None:
    model_name, _ = registry.ARCHS[arch]
    assert arch.startswith("shiftadd_")
    assert ARCH_MODEL_REGISTRY[arch] is MODEL_REGISTRY[model_name]


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
