"""Every fairseq registration of the plugin, in tables (tests iterate over them).

Classes carry no decorators: this module alone names them. Every registered name starts with
``shiftadd_``; fairseq 0.12.3 silently returns an existing task or model registered under the same
name, so ``tests/test_registry.py`` checks that each name maps to our class.
"""
from fairseq.criterions import register_criterion
from fairseq.models import register_model, register_model_architecture
from fairseq.tasks import register_task

from . import compat
from .criterions.supernet_ce import SupernetCriterionConfig, SupernetCrossEntropyCriterion
from .models import archs
from .models.subnet import ShiftAddTransformer, SubnetModelConfig
from .models.supernet import ShiftAddSupernet, SupernetConfig
from .tasks.supernet_translation import SupernetTranslationConfig, SupernetTranslationTask

compat.install()

TASKS = {"shiftadd_translation": (SupernetTranslationTask, SupernetTranslationConfig)}
MODELS = {
    "shiftadd_supernet": (ShiftAddSupernet, SupernetConfig),
    "shiftadd_transformer": (ShiftAddTransformer, SubnetModelConfig),
}
ARCHS = {
    "shiftadd_supernet_wmt14_en_de": ("shiftadd_supernet", archs.supernet_wmt14_en_de),
    "shiftadd_supernet_wmt14_en_fr": ("shiftadd_supernet", archs.supernet_wmt14_en_fr),
    "shiftadd_supernet_hat_wmt14": ("shiftadd_supernet", archs.supernet_hat_wmt14),
    "shiftadd_supernet_iwslt14_de_en": ("shiftadd_supernet", archs.supernet_iwslt14_de_en),
    "shiftadd_supernet_demo": ("shiftadd_supernet", archs.supernet_demo),
    "shiftadd_supernet_tiny": ("shiftadd_supernet", archs.supernet_tiny),
}
CRITERIONS = {
    "shiftadd_label_smoothed_cross_entropy": (SupernetCrossEntropyCriterion, SupernetCriterionConfig),
}

for _name, (_cls, _config) in TASKS.items():
    register_task(_name, dataclass=_config)(_cls)
for _name, (_cls, _config) in MODELS.items():
    register_model(_name, dataclass=_config)(_cls)
for _name, (_model, _fill_defaults) in ARCHS.items():
    register_model_architecture(_model, _name)(_fill_defaults)
for _name, (_cls, _config) in CRITERIONS.items():
    register_criterion(_name, dataclass=_config)(_cls)
