"""Fast paths of the operators, selected automatically inside their functional cores.

The reference PyTorch code in :mod:`fairseq_shiftadd.ops` stays the ground truth and the fallback; a fast
path runs only where it supports the inputs (device, dtype, a successful build). ``FAIRSEQ_SHIFTADD_KERNELS=
reference`` turns every fast path off.

* :mod:`.dispatch` — which kernel below computes each adder product: :func:`~fairseq_shiftadd.ops.adder.add_matmul`'s
  forward and input gradient, the depthwise adder convolution, the lightweight add mixers (None: the reference), and
  the product mixer on CPU;
* :mod:`.triton_adder` — ``add_matmul``'s products for CUDA tensors when Triton is installed (the ``gpu`` extra);
* :mod:`.triton_depthwise` — the depthwise adder window for CUDA tensors (depthwise
  :class:`~fairseq_shiftadd.ops.adder.AddConv2d` and the add mixers, forward, both gradients; no unfolded patches);
* :mod:`.cpu_adder` — ``add_matmul``'s products on CPU (``cpu_adder.cpp``, built at first use by :mod:`.build`), and
  the implicit-im2col forward of a dense :class:`~fairseq_shiftadd.ops.adder.AddConv2d` at inference;
* :mod:`.cpu_depthwise` — the direct depthwise adder convolution on CPU (``cpu_depthwise.cpp``), used by
  depthwise :class:`~fairseq_shiftadd.ops.adder.AddConv2d`;
* :mod:`.cpu_mixer` — the lightweight add and conv mixers on CPU on their time-major layout (``cpu_mixer.cpp``),
  used by :func:`~fairseq_shiftadd.ops.lightconv.lightweight_mix`;
* :mod:`.build` — compiles a kernel source at first use, declares and calls its C functions;
* :mod:`.weight_cache` — derived inference weights (the shift layers' ``s * 2**p``, the weight slots' ``q(W)``,
  ``T(W)``), cached per parameter version while no autograd graph is recorded.
"""
