"""Operator benchmark: time and peak memory of each operator as a ratio to the torch layer of the same shape.

Every row is measured in the same run as its baseline (``nn.Linear`` for linear layers, ``nn.Conv2d``
for 2-D convolutions, a depthwise ``nn.Conv1d`` for the lightweight token mixers), their repetitions interleaved,
so ratios are comparable across machines even when absolute times are not, and a drift of the machine's speed
during a row falls on both. A forward+backward backpropagates a fixed dense
gradient of the output's shape (as a loss upstream does; ``y.sum()`` would hand a stride-0 one). Peak memory is the
growth of the peak resident set during one forward+backward, measured in a fresh process per operator (Linux
``/proc``; ``n/a`` elsewhere); with ``--device cuda``, the growth of the CUDA allocator's peak, in the timing process.

The operators run their fast paths (``fairseq_shiftadd/ops/kernels``) wherever those apply; ``--reference`` forces the
reference PyTorch paths (``FAIRSEQ_SHIFTADD_KERNELS=reference``), so the two can be compared. fairseq's own
``LightweightConv1dTBC`` (band-matrix and unfold paths) is measured against the same depthwise ``Conv1d`` baseline as
the mixers. The ``step`` rows time incremental decoding instead: a causal mixer fed one position at a time through ``T``
steps from an empty state (:meth:`~fairseq_shiftadd.ops.lightconv.LightweightMixer.step`, at a beam's batch), against
fairseq's ``LightweightConv1dTBC`` stepped through the same stream with its ``incremental_state``; no gradients
(``fwd+bwd`` and memory: ``n/a``). The shift-add mixer holds a ``C x C`` shift linear before its adder conv
(DeepShift-PS; DeepShift-Q, the translation models' default, in a row of its own), so its rows are also measured against
fairseq's conv after an ``nn.Linear`` of the same width (``vs Linear + fairseq``), and its two parts apart: the shift
linear on the mixer's input against that ``nn.Linear`` (``C->C, the shift-add mixer's``), the add mixer against
fairseq's band path; the conv and add mixers are timed against fairseq's band path directly (``vs fairseq (band)``).
The ``ShiftLinear ... step`` and ``AddLinear step`` rows time one eval forward at a beam's batch (a decoding step's
rows: a shift linear reads its packed codes, an add layer its weight prepared once) against ``nn.Linear``, the add
layer also at ``d -> d`` (where the weight stays in cache and the call's own overhead counts most). On a shared machine
prefer ``--best`` (minimum of the repetitions).

The timing process pins glibc's ``mmap`` threshold (``mallopt``, 64 MiB): left dynamic, the same loop of
few-hundred-KiB allocations (a decoding step's window, a layer's output) ran at two speeds from one run to the
next, 3x apart, as blocks were mapped fresh (page faults) or reused, for the baselines as for the operators.

    python benchmarks/ops.py            # representative NLP (and one vision) shapes
    python benchmarks/ops.py --quick    # tiny shapes, a smoke run
    python benchmarks/ops.py --best --repeat 7 --skip-memory --only Add   # best-of-7 times of the adder rows
    python benchmarks/ops.py --device cuda --repeat 20                    # on a GPU (Triton kernels for adders)
    python benchmarks/ops.py --device cuda --repeat 20 --large            # GPU-sized shapes (launches amortised)
    python benchmarks/ops.py --mixers --best --repeat 7 --skip-memory     # the mixers over lengths and kernel sizes

``--large`` measures shapes of a GPU training batch, where the default ones leave a GPU to kernel launches: 8192
tokens through the dense layers, 4096 (T=64, B=64) through the mixers, a beam of 5 over 64 sentences for the
steps, and 32 images of 128 x 56 x 56 for the convolutions. ``--mixers`` times the conv and add mixers against
fairseq's band path at 1024 tokens a batch, sequences of 8, 32 and 128 tokens, each of the space's kernel sizes
(3, 7, 15, 31), C 512 (:data:`MIXER_SWEEP`): fairseq's band product costs ``T`` per output whatever ``K``, a mixer's
window ``K``, so the default shape (T 32, K 31) is not the only one that decides which is faster.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from fairseq_shiftadd.ops.adder import AddConv2d, AddLinear
from fairseq_shiftadd.ops.lightconv import LightweightAdd, LightweightConv, LightweightShiftAdd
from fairseq_shiftadd.ops.shift import ShiftConv2d, ShiftLinear


@dataclass
class Case:
    """One operator on one input shape, and the torch baseline it is compared with."""

    name: str
    shape: str
    make: Callable[[], nn.Module]
    make_baseline: Callable[[], nn.Module]
    make_input: Callable[[], Tensor]
    train: bool = True  # False: inference only (no forward+backward time, no memory)


@dataclass
class Measurement:
    forward_ms: float
    train_ms: Optional[float]
    peak_mib: Optional[float]


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _timed(fns: Sequence[Callable[[], None]], repeat: int, best: bool, device: torch.device) -> List[float]:
    """Median (or with ``best`` the minimum) time of each of ``fns`` in ms, after one warm-up call each, their
    repetitions interleaved (the order reversed every round) so that the machine's drifts in speed fall on an operator
    and its baseline alike (on CUDA synchronised before and after each call)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns:
        fn()  # warm-up (and, on CUDA, the kernels' autotuning)
    times: List[List[float]] = [[] for _ in fns]
    for round_ in range(repeat):
        for i in (range(len(fns)) if round_ % 2 == 0 else reversed(range(len(fns)))):
            sync()
            start = time.perf_counter()
            fns[i]()
            sync()
            times[i].append(time.perf_counter() - start)
    return [1000 * (min(t) if best else sorted(t)[len(t) // 2]) for t in times]


def _train_step(module: nn.Module, x: Tensor) -> Callable[[], None]:
    """One forward+backward of ``module`` on ``x`` against a fixed dense output gradient, as a loss upstream gives
    (``y.sum().backward()`` would hand every operator a stride-0 gradient, which some copy and others read as it is:
    fairseq's band path took 4.7 ms with it against 3.2 ms with a dense one, measured)."""
    with torch.no_grad():
        grad = torch.randn_like(module(x))

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(grad)

    return step


def _peak_mib(size: str, index: int, baseline: bool) -> Optional[float]:
    """In a fresh process: peak-RSS growth (MiB) of one forward+backward of case ``index`` (or its baseline)."""
    torch.manual_seed(0)
    case = cases(size)[index]
    module = case.make_baseline() if baseline else case.make()
    x = case.make_input().requires_grad_(True)
    step = _train_step(module, x)
    gc.collect()
    before = _status_kib("VmRSS")
    step()
    after = _status_kib("VmHWM")
    return None if before is None or after is None else max(after - before, 0) / 1024


def _cuda_peak_mib(module: nn.Module, x: Tensor) -> float:
    """Peak growth of CUDA memory allocated (MiB) during one forward+backward."""
    step = _train_step(module, x)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return max(torch.cuda.max_memory_allocated() - before, 0) / 2**20


def measure(case: Case, index: int, size: str, repeat: int, best: bool, memory: bool,
            device: torch.device) -> List[Measurement]:
    """The baseline's and the operator's forward and forward+backward times (ms), timed in alternation, and
    (``memory``) the peak memory of one training step of each (MiB)."""
    modules, inputs = [], []
    for make in (case.make_baseline, case.make):
        torch.manual_seed(0)
        modules.append(make().to(device))
        inputs.append(case.make_input().to(device).requires_grad_(True))

    def forward(module: nn.Module, x: Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                module(x)

        return run

    forward_ms = _timed([forward(m, x) for m, x in zip(modules, inputs)], repeat, best, device)
    if not case.train:
        return [Measurement(ms, None, None) for ms in forward_ms]
    train_ms = _timed([_train_step(m, x) for m, x in zip(modules, inputs)], repeat, best, device)
    if not memory:
        return [Measurement(f, t, None) for f, t in zip(forward_ms, train_ms)]
    if device.type == "cuda":
        return [Measurement(f, t, _cuda_peak_mib(m, x)) for f, t, m, x in zip(forward_ms, train_ms, modules, inputs)]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        peaks = [pool.apply(_peak_mib, (size, index, baseline)) for baseline in (True, False)]
    return [Measurement(f, t, peak) for f, t, peak in zip(forward_ms, train_ms, peaks)]


# (n, d, ffn, t, b, k, beam, image, channels, batch) per size
SIZES = {"quick": (64, 32, 64, 8, 2, 7, 2, 8, 8, 2), "default": (2048, 512, 2048, 32, 32, 31, 5, 28, 64, 8),
         "large": (8192, 512, 2048, 64, 64, 31, 320, 56, 128, 32)}


MIXER_SWEEP = {"lengths": (8, 32, 128), "tokens": 1024, "kernel_sizes": (3, 7, 15, 31), "channels": 512, "heads": 8}
"""``--mixers``: sequence lengths ``T`` (batch ``tokens / T``), the space's kernel sizes (docs/method.md), width."""


def mixer_sweep_cases() -> List[Case]:
    """The conv and add mixers against fairseq's band path at every length and kernel size of :data:`MIXER_SWEEP`
    (fairseq's band product costs ``T`` per output whatever ``K``, the mixers' windows ``K``)."""
    sweep = MIXER_SWEEP
    d, heads = sweep["channels"], sweep["heads"]
    return [Case(f"{mixer.__name__} vs fairseq (band)", f"T{t} B{sweep['tokens'] // t} C{d} K{k}",
                 lambda mixer=mixer, k=k: mixer(d, k, heads), lambda k=k: _FairseqLightweight(d, k, heads),
                 lambda t=t: torch.randn(t, sweep["tokens"] // t, d))
            for t in sweep["lengths"] for k in sweep["kernel_sizes"] for mixer in (LightweightConv, LightweightAdd)]


def cases(size: str) -> List[Case]:
    if size == "mixers":
        return mixer_sweep_cases()
    n, d, ffn, t, b, k, beam, image, channels, batch = SIZES[size]
    linear_in = lambda: torch.randn(n, d)  # noqa: E731
    seq_in = lambda: torch.randn(t, b, d)  # noqa: E731
    beam_in = lambda: torch.randn(t, beam, d)  # noqa: E731
    fairseq_step = lambda: _FairseqStream(d, k, heads)  # noqa: E731
    image_in = lambda: torch.randn(batch, channels, image, image)  # noqa: E731
    depthwise = lambda: _TimeMajorDepthwise(d, k)  # noqa: E731
    conv = lambda: nn.Conv2d(channels, channels, 3, padding=1, bias=False)  # noqa: E731
    heads = 8 if d % 8 == 0 else 1
    return [
        Case("ShiftLinear (ps)", f"{n}x{d}->{ffn}", lambda: ShiftLinear(d, ffn), lambda: nn.Linear(d, ffn), linear_in),
        Case("ShiftLinear (q)", f"{n}x{d}->{ffn}", lambda: ShiftLinear(d, ffn, mode="q"), lambda: nn.Linear(d, ffn),
             linear_in),
        *(Case(f"ShiftLinear ({mode}) step", f"{beam}x{d}->{ffn}", lambda mode=mode: ShiftLinear(d, ffn, mode=mode),
               lambda: nn.Linear(d, ffn), lambda: torch.randn(beam, d), train=False) for mode in ("ps", "q")),
        Case("AddLinear", f"{n}x{d}->{ffn}", lambda: AddLinear(d, ffn), lambda: nn.Linear(d, ffn, bias=False),
             linear_in),
        *(Case("AddLinear step", f"{beam}x{d}->{width}", lambda width=width: AddLinear(d, width),
               lambda width=width: nn.Linear(d, width, bias=False), lambda: torch.randn(beam, d), train=False)
          for width in (ffn, d)),
        Case("ShiftConv2d 3x3", f"{batch}x{channels}x{image}x{image}",
             lambda: ShiftConv2d(channels, channels, 3, padding=1, bias=False), conv, image_in),
        Case("AddConv2d 3x3", f"{batch}x{channels}x{image}x{image}",
             lambda: AddConv2d(channels, channels, 3, padding=1), conv, image_in),
        Case("AddConv2d 3x3 depthwise", f"{batch}x{channels}x{image}x{image}",
             lambda: AddConv2d(channels, channels, 3, padding=1, groups=channels),
             lambda: nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), image_in),
        Case("LightweightConv", f"T{t} B{b} C{d} K{k}", lambda: LightweightConv(d, k, heads), depthwise, seq_in),
        Case("LightweightAdd", f"T{t} B{b} C{d} K{k}", lambda: LightweightAdd(d, k, heads), depthwise, seq_in),
        Case("LightweightShiftAdd", f"T{t} B{b} C{d} K{k}", lambda: LightweightShiftAdd(d, k, heads), depthwise,
             seq_in),
        Case("fairseq LightweightConv1dTBC (band)", f"T{t} B{b} C{d} K{k}",
             lambda: _FairseqLightweight(d, k, heads, unfold=False), depthwise, seq_in),
        Case("fairseq LightweightConv1dTBC (unfold)", f"T{t} B{b} C{d} K{k}",
             lambda: _FairseqLightweight(d, k, heads, unfold=True), depthwise, seq_in),
        *(Case(f"{mixer.__name__} vs fairseq (band)", f"T{t} B{b} C{d} K{k}", lambda mixer=mixer: mixer(d, k, heads),
               lambda: _FairseqLightweight(d, k, heads), seq_in) for mixer in (LightweightConv, LightweightAdd)),
        *(Case(f"LightweightShiftAdd{suffix} vs Linear + fairseq (band)", f"T{t} B{b} C{d} K{k}",
               lambda mode=mode: LightweightShiftAdd(d, k, heads, shift_mode=mode),
               lambda: _FairseqLightweight(d, k, heads, linear=True), seq_in)
          for mode, suffix in (("ps", ""), ("q", " (q)"))),
        *(Case(f"ShiftLinear ({mode}) C->C, the shift-add mixer's", f"T{t} B{b} C{d}",
               lambda mode=mode: ShiftLinear(d, d, mode=mode), lambda: nn.Linear(d, d), seq_in)
          for mode in ("ps", "q")),
        *(Case(f"{mixer.__name__} step", f"T{t} B{beam} C{d} K{k}",
               lambda mixer=mixer: _Stream(mixer(d, k, heads, padding="causal")), fairseq_step, beam_in, train=False)
          for mixer in (LightweightConv, LightweightAdd, LightweightShiftAdd)),
        Case("LightweightShiftAdd step vs Linear + fairseq", f"T{t} B{beam} C{d} K{k}",
             lambda: _Stream(LightweightShiftAdd(d, k, heads, padding="causal")),
             lambda: _FairseqStream(d, k, heads, linear=True), beam_in, train=False),
    ]


class _FairseqLightweight(nn.Module):
    """fairseq's own lightweight conv (softmax-normalised head kernels, centred), on one of its two paths, after an
    ``nn.Linear`` (C -> C) with ``linear``."""

    def __init__(self, channels: int, kernel_size: int, heads: int, unfold: bool = False, linear: bool = False) -> None:
        super().__init__()
        from fairseq.modules import LightweightConv1dTBC  # only these rows need fairseq

        self.linear = nn.Linear(channels, channels) if linear else nn.Identity()
        self.conv = LightweightConv1dTBC(channels, kernel_size, kernel_size // 2, heads, weight_softmax=True)
        self.unfold = unfold

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.linear(x), unfold=self.unfold)


class _Stream(nn.Module):
    """Incremental decoding of a causal mixer: ``T`` steps of one position each, from an empty buffer."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer.eval()

    def forward(self, x: Tensor) -> Tensor:
        buffer, outputs = None, []
        for t in range(x.size(0)):
            y, buffer = self.mixer.step(x[t:t + 1], buffer)
            outputs.append(y)
        return torch.cat(outputs)


class _FairseqStream(nn.Module):
    """Baseline of the ``step`` rows: fairseq's causal lightweight conv stepped through ``T`` positions (each after an
    ``nn.Linear`` (C -> C) with ``linear``)."""

    def __init__(self, channels: int, kernel_size: int, heads: int, linear: bool = False) -> None:
        super().__init__()
        from fairseq.modules import LightweightConv1dTBC

        self.linear = nn.Linear(channels, channels) if linear else nn.Identity()
        self.conv = LightweightConv1dTBC(channels, kernel_size, kernel_size - 1, heads, weight_softmax=True).eval()

    def forward(self, x: Tensor) -> Tensor:
        state: dict = {}
        return torch.cat([self.conv(self.linear(x[t:t + 1]), incremental_state=state) for t in range(x.size(0))])


class _TimeMajorDepthwise(nn.Module):
    """Baseline for the token mixers: a depthwise ``nn.Conv1d`` over time on T x B x C input."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.permute(1, 2, 0)).permute(2, 0, 1)


def _ratio(value: Optional[float], base: Optional[float]) -> str:
    if value is None or base is None or base <= 0:
        return "n/a"
    return f"{value / base:.2f}x"


def run(size: str, repeat: int, best: bool = False, memory: bool = True, only: str = "",
        device: torch.device = torch.device("cpu")) -> List[List[str]]:
    rows = []
    for index, case in enumerate(cases(size)):
        if only not in case.name:
            continue
        base, ours = measure(case, index, size, repeat, best, memory, device)
        peak = "n/a" if ours.peak_mib is None else f"{ours.peak_mib:.0f}"
        rows.append([
            case.name, case.shape,
            f"{ours.forward_ms:.2f}", _ratio(ours.forward_ms, base.forward_ms),
            "n/a" if ours.train_ms is None else f"{ours.train_ms:.2f}", _ratio(ours.train_ms, base.train_ms),
            peak, _ratio(ours.peak_mib, base.peak_mib),
        ])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def _pin_allocator(threshold_bytes: int = 64 << 20) -> bool:
    """Fix glibc's ``mmap`` and trim thresholds (no dynamic threshold; see the module docstring). False off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, threshold_bytes)) and bool(libc.mallopt(m_trim_threshold,
                                                                                       2 * threshold_bytes))


def _device(name: str) -> torch.device:
    """``--device``: ``cpu``, or ``cuda`` (or ``cuda:N``) where a CUDA device is present."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {name!r} (cpu or cuda)") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        raise argparse.ArgumentTypeError(f"{name!r}: not cpu, or no CUDA device here")
    return device


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="tiny shapes (smoke run)")
    sizes.add_argument("--large", action="store_true", help="GPU-sized shapes (see above)")
    sizes.add_argument("--mixers", action="store_true",
                       help="the conv and add mixers against fairseq's band path over lengths and kernel sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--best", action="store_true", help="report the minimum of the repetitions, not the median")
    parser.add_argument("--skip-memory", action="store_true", help="do not measure peak memory (faster)")
    parser.add_argument("--only", default="", help="measure only the operators whose name contains this text")
    parser.add_argument("--device", type=_device, default=torch.device("cpu"),
                        help="cpu or cuda (CUDA: synchronised timing, peak memory from the CUDA allocator)")
    parser.add_argument("--reference", action="store_true",
                        help="use the reference PyTorch paths (FAIRSEQ_SHIFTADD_KERNELS=reference), not the kernels")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference:
        os.environ["FAIRSEQ_SHIFTADD_KERNELS"] = "reference"  # read at each call; inherited by the memory processes
    header = ["operator", "shape", "fwd ms", "fwd vs torch", "fwd+bwd ms", "fwd+bwd vs torch", "peak MiB",
              "peak vs torch"]
    paths = "reference paths" if args.reference else "fast paths where available"
    allocator = "glibc mmap threshold pinned at 64 MiB" if _pin_allocator() else "allocator as it is"
    where = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else \
        f"{torch.get_num_threads()} threads"
    size = "quick" if args.quick else "large" if args.large else "mixers" if args.mixers else "default"
    print(f"torch {torch.__version__}, {where}, {paths}, {size} shapes, "
          f"{'best' if args.best else 'median'} of {args.repeat}, {allocator}; baseline: torch layer of the same shape")
    print(" | ".join(header))
    rows = run(size, args.repeat, args.best, not args.skip_memory, args.only, args.device)
    print("\nMarkdown:\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
