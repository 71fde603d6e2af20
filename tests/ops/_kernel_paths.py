"""Helpers of the kernel tests: run the same computation on the fast paths and on the reference paths."""
from typing import Callable, Sequence, Tuple

from torch import Tensor


def on_both_paths(monkeypatch, run: Callable[[], Sequence[Tensor]]) -> Tuple[Sequence[Tensor], Sequence[Tensor]]:
    """``run()`` on the fast paths, then with ``FAIRSEQ_SHIFTADD_KERNELS=reference``."""
    results = []
    for reference in (False, True):
        monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference" if reference else "")
        results.append(run())
    return results[0], results[1]


def layer_step(layer, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Output, input gradient and weight gradient of ``layer`` for the output gradient ``cos(y)``."""
    layer.zero_grad()
    xi = x.clone().requires_grad_()
    y = layer(xi)
    y.backward(y.detach().cos())
    return y.detach(), xi.grad, layer.weight.grad.clone()
