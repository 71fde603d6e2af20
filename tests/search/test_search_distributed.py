"""Candidates split across 2 gloo processes: the same search as in 1 process (fake fitness, no fairseq)."""
import json
from pathlib import Path

import torch.distributed as dist

from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain
from fairseq_shiftadd.search.distributed import from_rank0, launch, rank_and_world, split_batch
from fairseq_shiftadd.space import get_space

from test_search_engine import SMALL, fake_loss, fake_metrics

TINY = TranslationDomain(get_space("tiny"))


def _rank_fitness(subs):
    """Records which rank evaluated what, so the test can check that the work was split."""
    rank, _ = rank_and_world()
    return [(fake_loss(s), rank) for s in subs]


def _search(out: Path) -> None:
    rank, world = rank_and_world()
    evaluated_by = []

    def fitness(subs):
        pairs = split_batch(_rank_fitness)(subs)
        evaluated_by.extend(r for _, r in pairs)
        return [value for value, _ in pairs]

    result = EvolutionarySearch(TINY, EvolutionConfig(**SMALL), fitness, from_rank0(fake_metrics),
                                state_path=out / "state.json", write_state=rank == 0, progress=False).run()
    summary = {"candidates": [c.to_dict() for c in result.candidates], "world": world,
               "ranks_used": sorted(set(evaluated_by))}
    (out / f"rank{rank}.json").write_text(json.dumps(summary))
    if world > 1:
        dist.barrier()


def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    launch(_search, (tmp_path / "one",), world_size=1, cpu=True)
    launch(_search, (tmp_path / "two",), world_size=2, cpu=True)
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    twos = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert one["world"] == 1 and one["ranks_used"] == [0]
    for two in twos:
        assert two["world"] == 2 and two["ranks_used"] == [0, 1]
        assert two["candidates"] == one["candidates"]
    assert json.loads((tmp_path / "two" / "state.json").read_text())["generation"] == SMALL["generations"]
