"""Data preparation: raw parallel text -> sentencepiece -> fairseq binary data (``data-bin``)."""
