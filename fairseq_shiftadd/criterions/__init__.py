"""Criterions of the plugin (registered in :mod:`fairseq_shiftadd.registry`)."""
