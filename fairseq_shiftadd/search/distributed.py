"""Candidate evaluation across ``torch.distributed`` ranks.

Every rank runs the same evolution (same seed, same code path); only the expensive steps are shared:

* :func:`split_batch` wraps a batch fitness so that rank ``r`` evaluates the subnets ``r, r + W, r + 2W, ...``
  of each batch and ``all_gather_object`` hands every rank all results, in the batch's order;
* :func:`from_rank0` wraps a non-deterministic function (measured latency) so that rank 0 computes it and
  broadcasts the value, keeping every rank's evolution identical.

:func:`launch` starts the ranks: under ``torchrun`` (``WORLD_SIZE``/``RANK`` in the environment) it joins the
group with ``env://``; with ``world_size > 1`` it spawns the processes itself (TCP on localhost); with one
process it just calls the function. Backend: NCCL when running on CUDA, gloo on CPU. (fairseq's own
``call_main`` spawns one process per GPU and cannot run CPU ranks.)

Stopping. A rank never outlives the process that started it (the launcher, or ``torchrun``'s agent): on Linux
it asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), elsewhere a daemon thread
polls the parent's pid. So a launcher killed by SIGKILL takes its ranks with it; a launcher interrupted by
SIGTERM or Ctrl-C (a ``KeyboardInterrupt``) kills its ranks itself before it exits. SIGKILL suits ranks that
may be blocked inside a collective; the search writes every file atomically, so a killed rank leaves no
half-written output.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, List, NoReturn, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["rank_and_world", "split_batch", "from_rank0", "launch", "exit_with_parent", "Stopped", "stop_on_sigterm"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

T = TypeVar("T")
R = TypeVar("R")


def rank_and_world() -> Tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def split_batch(fn: Callable[[Sequence[T]], Sequence[R]]) -> Callable[[Sequence[T]], List[R]]:
    """``fn`` on a batch, its items split across ranks (strided), results gathered on every rank in order.

    Every rank must call the wrapper with the same batch.
    """

    def distributed(items: Sequence[T]) -> List[R]:
        rank, world = rank_and_world()
        if world == 1:
            return list(fn(items))
        mine = list(fn(list(items[rank::world])))
        gathered: List[Any] = [None] * world
        dist.all_gather_object(gathered, mine)
        out: List[Any] = [None] * len(items)
        for r, values in enumerate(gathered):
            out[r::world] = values
        return out

    return distributed


def from_rank0(fn: Callable[[T], R]) -> Callable[[T], R]:
    """``fn`` computed on rank 0 and broadcast to every rank (every rank must call it with the same argument)."""

    def broadcast(arg: T) -> R:
        rank, world = rank_and_world()
        if world == 1:
            return fn(arg)
        box: List[Any] = [fn(arg) if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    return broadcast


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend(cpu: bool) -> str:
    return "gloo" if cpu or not torch.cuda.is_available() else "nccl"


class Stopped(KeyboardInterrupt):
    """A termination signal (SIGTERM), raised like Ctrl-C's ``KeyboardInterrupt`` wherever the process is, so
    that ``finally`` blocks run (atomic writes drop their partial file) and :func:`launch` kills its ranks."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: Any) -> NoReturn:
    raise Stopped(signum)


def stop_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Stopped` in this (main-thread) process."""
    signal.signal(signal.SIGTERM, _raise_stopped)


def _watch_parent(parent_pid: int, interval_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval_s)
    os._exit(1)


def exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """Make this process die when process ``parent_pid`` (its parent) does.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; other systems, or if ``prctl`` fails: a daemon thread that
    exits the process once ``os.getppid()`` is no longer ``parent_pid`` (checked every ``interval_s``). A parent
    that died before the call is caught by the same check.
    """
    armed = False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid, interval_s), daemon=True,
                         name="exit-with-parent").start()


def _run_rank(fn: Callable[..., None], args: Tuple[Any, ...], cpu: bool, **init: Any) -> None:
    dist.init_process_group(_backend(cpu), **init)
    if _backend(cpu) == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", dist.get_rank())) % torch.cuda.device_count())
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world_size: int, port: int, fn: Callable[..., None], args: Tuple[Any, ...],
             cpu: bool, launcher_pid: int) -> None:
    exit_with_parent(launcher_pid)
    _run_rank(fn, args, cpu, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)


def _kill_children() -> None:
    """SIGKILL every child process of this one (the spawned ranks) and reap them."""
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:
        child.join()


def launch(fn: Callable[..., None], args: Tuple[Any, ...], world_size: int = 1, cpu: bool = False) -> None:
    """Call ``fn(*args)`` on every rank (see the module docstring).

    Args:
        fn: a picklable (module-level) function.
        args: its arguments (picklable).
        world_size: processes to spawn when not under ``torchrun``.
        cpu: use gloo even if CUDA is available.

    Raises:
        KeyboardInterrupt: Ctrl-C (or SIGTERM turned into it by the caller); spawned ranks are killed first.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        exit_with_parent(os.getppid())  # torchrun's agent
        _run_rank(fn, args, cpu, init_method="env://")
    elif world_size > 1:
        try:
            mp.spawn(_spawned, args=(world_size, _free_port(), fn, args, cpu, os.getpid()), nprocs=world_size,
                     join=True)
        except KeyboardInterrupt:
            _kill_children()
            raise
    else:
        fn(*args)
