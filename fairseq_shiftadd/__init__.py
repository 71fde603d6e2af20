"""fairseq-shiftadd: ShiftAddNAS (arXiv 2205.08119) as a fairseq plugin.

``fairseq_shiftadd.ops`` needs only PyTorch. With fairseq installed, importing this package
registers the plugin's tasks, models and criterions (see :mod:`fairseq_shiftadd.registry`).
"""
__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ModuleNotFoundError as err:  # the operators work without fairseq
    if err.name != "fairseq":
        raise
else:
    from . import registry  # noqa: F401
