"""Tasks of the plugin (registered in :mod:`fairseq_shiftadd.registry`)."""
import fairseq  # noqa: F401  (first: fairseq's import registers the plugin, see fairseq_shiftadd/__init__.py)
