"""Tests of the vision search space (fairseq_shiftadd.vision.space) and its search domain."""
import dataclasses
import random

import pytest

from fairseq_shiftadd.search.evolution import EvolutionConfig, EvolutionarySearch
from fairseq_shiftadd.vision.search import VisionDomain
from fairseq_shiftadd.vision.space import (
    SPACES,
    BlockConfig,
    StageConfig,
    VisionBlock,
    VisionSubnet,
    check,
    crossover,
    predictor_features,
    get_space,
    largest,
    load_subnet,
    mutate,
    sample,
    smallest,
)


@pytest.mark.parametrize("name", list(SPACES))
def test_sample_mutate_crossover_stay_in_space(name):
    space, rng = get_space(name), random.Random(0)
    subs = [sample(space, rng) for _ in range(30)]
    for a, b in zip(subs, subs[1:]):
        check(space, mutate(space, a, rng, 0.5))
        child = crossover(space, a, b, rng)
        check(space, child)
        for i, stage in enumerate(child.stages):  # every gene comes from a parent
            assert stage.width in (a.stages[i].width, b.stages[i].width)
            assert len(stage.blocks) in (len(a.stages[i].blocks), len(b.stages[i].blocks))
    assert len({s for s in subs}) > 20  # hashable, and sampling varies
    assert len({len(predictor_features(space, s)) for s in subs}) == 1


def test_sampling_is_seeded_and_mutation_prob_zero_is_identity():
    space = get_space("cifar")
    assert sample(space, random.Random(7)) == sample(space, random.Random(7))
    sub = sample(space, random.Random(1))
    assert mutate(space, sub, random.Random(2), 0.0) == sub
    assert mutate(space, sub, random.Random(2), 1.0) != sub


def test_round_trips(tmp_path):
    space = get_space("digits")
    sub = sample(space, random.Random(3))
    assert VisionSubnet.from_dict(sub.to_dict()) == sub
    path = tmp_path / "best.yaml"
    path.write_text("# loss: 0.1\n" + sub.to_yaml())
    assert load_subnet(path) == sub
    assert load_subnet('{"stages": ' + str(sub.to_dict()["stages"]).replace("'", '"') + "}") == sub
    assert type(space).from_dict(space.to_dict()) == space
    assert hash(sub) == hash(VisionSubnet.from_dict(sub.to_dict()))


def test_check_names_the_field_outside_the_space():
    space = get_space("digits")
    sub = largest(space)
    stage1 = dataclasses.replace(sub.stages[1], width=40)
    with pytest.raises(ValueError, match=r"^stages\[1\]\.width=40 not in allowed values \(32, 48\)$"):
        check(space, VisionSubnet((sub.stages[0], stage1, sub.stages[2])))
    bad_block = StageConfig(16, (BlockConfig(VisionBlock.ATTENTION, 0.5),))
    with pytest.raises(ValueError, match=r"stages\[0\]\.blocks\[0\]\.block='attention' not in allowed values"):
        check(space, VisionSubnet((bad_block, *sub.stages[1:])))
    with pytest.raises(ValueError, match=r"stages\[2\] depth=3 not in allowed values \(1, 2\)"):
        check(space, VisionSubnet((*sub.stages[:2], StageConfig(64, (sub.stages[2].blocks[0],) * 3))))
    with pytest.raises(ValueError, match="expansion=0.75 not in allowed values"):
        check(space, VisionSubnet((StageConfig(16, (BlockConfig("conv", 0.75),)), *sub.stages[1:])))
    with pytest.raises(ValueError, match="not a vision subnet"):
        VisionSubnet.from_dict({"stages": [{"width": 16, "blocks": [{"block": "mlp", "expansion": 1}]}]})


def test_image_size_the_space_cannot_take():
    with pytest.raises(ValueError,
                       match=r"^image_size=30 cannot be taken by space 'cifar': it must be a multiple of 8"):
        get_space("cifar", image_size=30)
    assert get_space("cifar", image_size=64).resolutions() == (64, 32, 16, 8)
    assert get_space("imagenet").resolutions() == (56, 28, 14, 7)
    with pytest.raises(ValueError, match="vision space 'mnist' not in allowed values"):
        get_space("mnist")


def test_largest_and_smallest():
    space = get_space("imagenet")
    big, small = largest(space), smallest(space)
    assert [len(s.blocks) for s in big.stages] == [2, 4, 5, 5]  # the original's 16 blocks
    assert [s.width for s in small.stages] == [192, 384, 768, 1536]


def _toy_fitness(subs):
    return [sum(s.width for s in sub.stages) / 100 + sum(b.block is VisionBlock.ADD for st in sub.stages
                                                          for b in st.blocks) for sub in subs]


def test_engine_runs_on_the_vision_domain_and_resumes(tmp_path):
    domain = VisionDomain(get_space("digits"))
    config = EvolutionConfig(population=8, parents=2, mutations=3, crossovers=3, generations=3, seed=4)
    metrics = lambda sub: {"depth": float(sum(len(s.blocks) for s in sub.stages))}  # noqa: E731
    full = EvolutionarySearch(domain, config, _toy_fitness, metrics, progress=False).run()
    state = tmp_path / "state.json"
    EvolutionarySearch(domain, dataclasses.replace(config, generations=1), _toy_fitness, metrics,
                       state_path=state, progress=False).run()
    resumed = EvolutionarySearch(domain, config, _toy_fitness, metrics, state_path=state, progress=False).run()
    assert resumed.best[0].subnet == full.best[0].subnet
    assert resumed.best[0].fitness == full.best[0].fitness
