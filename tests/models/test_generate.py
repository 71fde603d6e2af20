"""fairseq beam search on supernet and standalone: hypothesis scores == teacher-forced recomputation."""
from __future__ import annotations

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator
from torch.testing import assert_close


def _rescore(model, src, lengths, tokens, dictionary):
    """Per-token log-probabilities of ``tokens`` (ending with EOS) by one full, non-incremental forward."""
    prev = torch.cat([torch.tensor([dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
    logits = model(src, lengths, prev)[0]
    lprobs = model.get_normalized_probs((logits, None), log_probs=True)[0]
    return lprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("kind", ["supernet", "standalone"])
def test_beam_search_scores_match_full_forward(builders, task, kind):
    space = builders.spans
    dictionary = task.target_dictionary
    supernet = builders.supernet(task, space, "shared", seed=11)
    for sub in builders.covering_subnets(space, 2, seed=12):  # all four decoder block types
        supernet.set_subnet(sub)
        model = supernet if kind == "supernet" else builders.standalone(task, space, sub, supernet)
        src, lengths, _ = builders.token_batch(task, seed=13, bsz=3)
        generator = SequenceGenerator([model], dictionary, beam_size=3, max_len_b=8)
        with torch.no_grad():
            hypos = generator.generate([model], {"net_input": {"src_tokens": src, "src_lengths": lengths}})
            for i, beams in enumerate(hypos):
                assert len(beams) == 3
                one_src = src[i : i + 1, src[i].ne(dictionary.pad())]
                for hypo in beams:
                    expected = _rescore(model, one_src, lengths[i : i + 1], hypo["tokens"], dictionary)
                    assert_close(hypo["positional_scores"], expected, rtol=1e-4, atol=1e-4)
