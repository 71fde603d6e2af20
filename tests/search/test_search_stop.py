"""Stopping a multi-rank search: no rank outlives its launcher (SIGKILL or SIGTERM), and SIGTERM leaves the state
of the last finished generation, complete. A fake fitness that sleeps keeps the ranks busy; no fairseq."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain
from fairseq_shiftadd.search.distributed import launch, rank_and_world, split_batch, stop_on_sigterm
from fairseq_shiftadd.search.state import SearchState
from fairseq_shiftadd.space import SubnetConfig, get_space

from test_search_engine import SMALL, fake_loss, fake_metrics

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _slow_fitness(subs):
    time.sleep(0.02 * len(subs))
    return [fake_loss(s) for s in subs]


def _busy_rank(out: Path) -> None:
    """A rank of a search that would run for minutes; writes its pid first.

    It ignores SIGINT, as a rank blocked in a collective or inside code that swallows ``KeyboardInterrupt``
    effectively does: torch's own parent-death signal for spawned processes (SIGINT) then leaves it running.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rank, _ = rank_and_world()
    (out / f"rank{rank}.pid").write_text(str(os.getpid()))
    config = EvolutionConfig(**{**SMALL, "generations": 10_000})
    EvolutionarySearch(TranslationDomain(get_space("tiny")), config, split_batch(_slow_fitness), fake_metrics,
                       state_path=out / "state.json", write_state=rank == 0, progress=False).run()


def run_launcher(out: str) -> None:
    """The launcher process of the test (as ``fairseq-shiftadd-search`` does: SIGTERM stops, ranks are killed)."""
    stop_on_sigterm()
    try:
        launch(_busy_rank, (Path(out),), world_size=2, cpu=True)
    except KeyboardInterrupt as err:
        sys.exit(128 + getattr(err, "signum", signal.SIGINT))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_launcher_leaves_no_rank_running(tmp_path: Path, sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-c", f"from test_search_stop import run_launcher; run_launcher({str(tmp_path)!r})"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    pid_files = [tmp_path / f"rank{r}.pid" for r in (0, 1)]
    try:
        _wait_for(lambda: all(p.is_file() and p.read_text() for p in pid_files) or launcher.poll() is not None,
                  120, "both ranks to start")
        assert launcher.poll() is None, launcher.communicate()[1][-2000:]
        ranks: List[int] = [int(p.read_text()) for p in pid_files]
        _wait_for(lambda: (tmp_path / "state.json").is_file(), 60, "a finished generation")
        launcher.send_signal(sig)
        _, stderr = launcher.communicate(timeout=60)
        assert launcher.returncode in (-sig, 128 + sig), stderr[-2000:]
        _wait_for(lambda: not any(_alive(pid) for pid in ranks), 20, f"ranks {ranks} to exit")
    finally:  # never leave a process behind on the shared machine, even when the test fails
        if launcher.poll() is None:
            launcher.kill()
        for pid in (int(p.read_text()) for p in pid_files if p.is_file() and p.read_text()):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    state = SearchState.load(tmp_path / "state.json", SubnetConfig.from_dict)  # complete, loadable
    assert state.generation >= 1 and len(state.stats) == state.generation
    assert json.loads((tmp_path / "state.json").read_text())["generation"] == state.generation
