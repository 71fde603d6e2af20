"""The MODELS and ARCHS tables of the registry are what fairseq resolves, and the archs fill only absent fields."""
from __future__ import annotations

from argparse import Namespace

import pytest
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY, MODEL_REGISTRY

from fairseq_shiftadd import registry
from fairseq_shiftadd.space import SPACES


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_models_registered(name):
    cls, config = registry.MODELS[name]
    assert name.startswith("shiftadd_")
    assert MODEL_REGISTRY[name] is cls
    assert getattr(cls, "__dataclass") is config


@pytest.mark.parametrize("name", sorted(registry.ARCHS))
def test_archs_registered(name):
    model, fill_defaults = registry.ARCHS[name]
    assert name.startswith("shiftadd_")
    assert ARCH_MODEL_REGISTRY[name] is MODEL_REGISTRY[model]
    assert ARCH_CONFIG_REGISTRY[name] is fill_defaults


@pytest.mark.parametrize("name", sorted(registry.ARCHS))
def test_arch_fills_only_absent_fields(name):
    _, fill_defaults = registry.ARCHS[name]
    args = Namespace()
    fill_defaults(args)
    assert args.space in SPACES and name.endswith(args.space)
    given = Namespace(space="tiny", dropout=0.5)
    fill_defaults(given)
    assert (given.space, given.dropout) == ("tiny", 0.5)
