"""What the evolutionary search needs of a space of configurations: the :class:`SearchDomain` protocol.

The engine (:mod:`.evolution`) and its state file (:mod:`.state`) know configurations only through a domain:
draw one, mutate one, cross two, name the space for the resume fingerprint, and read a configuration back from
its JSON form. Translation subnets (:class:`TranslationDomain`, over a :class:`~fairseq_shiftadd.space.SearchSpace`)
and vision subnets implement it; configurations themselves are frozen, hashable values with ``to_dict()`` (and
``to_yaml()`` for the reports). This module needs no fairseq.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Dict, Hashable, Mapping, Protocol, TypeVar

from ..space import SearchSpace, SubnetConfig, crossover, mutate, sample

__all__ = ["SearchDomain", "TranslationDomain"]

Config = TypeVar("Config", bound=Hashable)


class SearchDomain(Protocol[Config]):
    """A searchable space of frozen, hashable configurations (each with ``to_dict()`` and ``to_yaml()``)."""

    @property
    def name(self) -> str:
        """The space's name (in error messages)."""

    def to_dict(self) -> Dict[str, Any]:
        """The space's definition as plain data (part of the resume fingerprint)."""

    def sample(self, rng: random.Random) -> Config:
        """A configuration drawn uniformly gene by gene."""

    def mutate(self, config: Config, rng: random.Random, prob: float) -> Config:
        """``config`` with each gene redrawn with probability ``prob``."""

    def crossover(self, a: Config, b: Config, rng: random.Random) -> Config:
        """Uniform crossover: each gene from ``a`` or ``b`` with probability 1/2."""

    def config_from_dict(self, data: Mapping[str, Any]) -> Config:
        """The configuration whose ``to_dict()`` is ``data``."""


@dataclass(frozen=True)
class TranslationDomain:
    """The translation search space as a :class:`SearchDomain` (the functions of :mod:`fairseq_shiftadd.space`)."""

    space: SearchSpace

    @property
    def name(self) -> str:
        return self.space.name

    def to_dict(self) -> Dict[str, Any]:
        return self.space.to_dict()

    def sample(self, rng: random.Random) -> SubnetConfig:
        return sample(self.space, rng)

    def mutate(self, config: SubnetConfig, rng: random.Random, prob: float) -> SubnetConfig:
        return mutate(self.space, config, rng, prob)

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
        return crossover(self.space, a, b, rng)

    def config_from_dict(self, data: Mapping[str, Any]) -> SubnetConfig:
        return SubnetConfig.from_dict(data)
