"""Fast paths of the operators, selected automatically inside their functional cores.

The reference PyTorch code in :mod:`fairseq_shiftadd.ops` stays the ground truth and the fallback; a fast
path runs only where it supports the inputs (device, dtype, a successful build). ``FAIRSEQ_SHIFTADD_KERNELS=
reference`` turns every fast path off.

* :mod:`.cpu_adder` — the adder layer's forward and input gradient on CPU (``cpu_adder.cpp``, built at first
  use by :mod:`.build`).
"""
