"""Training-mode behaviour: gradients reach exactly the active candidates; dropout scales with width."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.hetero import SharingMode, add_remap_regulariser
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig, extract_subnet_state
from fairseq_shiftadd.space import get_space, largest, smallest


def _loss(model, batch):
    src, lengths, prev = batch
    logits = model(src, lengths, prev)[0]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), prev.roll(-1, 1).flatten())


@pytest.mark.parametrize("sharing", [m.value for m in SharingMode])
def test_gradients_finite_and_only_for_active_candidates(builders, task, sharing):
    space = builders.tiny
    model = builders.supernet(task, space, sharing).train()
    for i, sub in enumerate(builders.covering_subnets(space, 4, seed=21) + [smallest(space)]):
        model.set_subnet(sub)
        model.zero_grad(set_to_none=True)
        _loss(model, builders.token_batch(task, seed=i)).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert all(torch.isfinite(g).all() for g in grads.values())
        layer = sub.encoder[0]
        fc1 = ("encoder.layers.0.ffn.fc1.weight.", "encoder.layers.0.ffn.fc1.bias.")
        ffn_keys = {n.split(".")[-1] for n in grads if n.startswith(fc1)}
        assert ffn_keys == ({layer.ffn_op.value} if sharing == "none" else {"shared"})
        if sharing == "none":  # candidates of other block types get no gradient
            mixer_weights = [n for n in grads
                             if n.startswith("encoder.layers.0.mixer.") and n.split(".")[-2] == "weight"]
            users = {n.split(".")[-1] for n in mixer_weights}
            assert users == {layer.block.value}
        if len(sub.decoder) < len(model.decoder.layers):  # skipped layers get no gradient
            assert not any(n.startswith(f"decoder.layers.{len(sub.decoder)}.") for n in grads)


def test_regulariser_only_in_heterogeneous_mode(builders, task):
    with_add = largest(builders.tiny, ffn_op=OpKind.ADD)
    for sharing in ("none", "shared"):
        model = builders.supernet(task, builders.tiny, sharing)
        model.set_subnet(with_add)
        assert model.sharing_regulariser().item() == 0.0
    model = builders.supernet(task, builders.tiny, "heterogeneous")
    model.set_subnet(with_add)
    value = model.sharing_regulariser()
    assert value.item() > 0.0 and value.requires_grad


def test_regulariser_acts_on_the_add_weights_of_the_active_subnet_only(builders, task):
    space = builders.tiny
    model = builders.supernet(task, space, "heterogeneous")
    transformer = largest(space, block=BlockType.ATTENTION, ffn_op=OpKind.MULT)
    model.set_subnet(transformer)
    assert model.sharing_regulariser().item() == 0.0  # no add candidate: nothing to regularise
    encoder = (dataclasses.replace(transformer.encoder[0], block=BlockType.LIGHTWEIGHT_SHIFTADD),
               dataclasses.replace(transformer.encoder[1], ffn_op=OpKind.ADD))
    model.set_subnet(dataclasses.replace(transformer, encoder=encoder))
    value = model.sharing_regulariser()
    ffn = model.encoder.layers[1].ffn
    expected = [add_remap_regulariser(slot.weight["shared"], slot.remap["add"]) for slot in (ffn.fc1, ffn.fc2)]
    assert_close(value, sum(expected))  # slots <= max_samples: no sampling, exact
    value.backward()
    remapped = {n for n, p in model.named_parameters() if p.grad is not None}
    # only the add views T_add of the add FFN: not the shared weights that the mult candidates read, and not
    # the adder mixer's kernel (softmax-normalised: no Laplace shape to match)
    assert remapped == {
        "encoder.layers.1.ffn.fc1.remap.add.log_scale",
        "encoder.layers.1.ffn.fc2.remap.add.log_scale",
    }


def test_add_step_on_a_shared_weight_follows_the_loss_and_matches_mult(task):
    # fairseq back-propagates the summed loss, then divides by the token count; AdderNet's fixed-norm scaling
    # made the add step shrink with the token count (0.04-0.08x the mult step at 4096 tokens)
    tiny = get_space("tiny")
    torch.manual_seed(0)
    model = ShiftAddSupernet.from_space(SupernetConfig(space="tiny", sharing="shared"), task, tiny).eval()  # no dropout
    g = torch.Generator().manual_seed(0)
    src, prev = torch.randint(4, 44, (16, 12), generator=g), torch.randint(4, 44, (16, 12), generator=g)

    def grads(op, loss_scale):
        model.set_subnet(largest(tiny, ffn_op=op))
        model.zero_grad(set_to_none=True)
        logits = model(src, torch.full((16,), 12), prev)[0]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), prev.roll(-1, 1).flatten(), reduction="sum")
        (loss * loss_scale).backward()
        ffn = model.encoder.layers[0].ffn
        return [slot.weight["shared"].grad.clone() for slot in (ffn.fc1, ffn.fc2)]

    add, add_scaled, mult = grads(OpKind.ADD, 1.0), grads(OpKind.ADD, 1 / 4096), grads(OpKind.MULT, 1.0)
    for a, a_scaled, m in zip(add, add_scaled, mult):
        assert_close(a_scaled, a / 4096)  # linear in the loss, as any gradient
        assert 0.25 < float(a.norm() / m.norm()) < 4.0  # a step of the mult candidate's size


def test_dropout_scales_with_width(builders, task):
    model = builders.supernet(task, builders.tiny, "shared", dropout=0.3, activation_dropout=0.2)
    assert model.encoder.dropouts.at(64) == (0.3 * 64 / 128, 0.2 * 64 / 128)


def _narrow(space):
    """A subnet of ``space`` at half the largest width on both sides (so d / d_ref = 1/2)."""
    sub = largest(space)
    return dataclasses.replace(sub, encoder_embed_dim=min(space.encoder_embed_dims),
                               decoder_embed_dim=min(space.decoder_embed_dims))


def test_retrained_subnet_keeps_the_supernet_dropout(builders, task):
    """A standalone subnet trains at p * d / d_supernet (0.15 for d = d_max / 2 at p = 0.3), not at p."""
    space, sub = builders.tiny, _narrow(builders.tiny)
    standalone = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name, dropout=0.3), task, space, sub)
    for stack in (standalone.encoder, standalone.decoder):
        assert stack.dropouts.at(64)[0] == pytest.approx(0.15)
    own = SubnetModelConfig(space=space.name, dropout=0.3, encoder_dropout_width=64, decoder_dropout_width=64)
    full_rate = ShiftAddTransformer.from_subnet(own, task, space, sub)
    assert full_rate.decoder.dropouts.at(64)[0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="--decoder-dropout-width=32 must be 0"):
        ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name, decoder_dropout_width=32), task, space, sub)


def test_standalone_trains_as_the_supernet_computes_the_subnet(builders, task):
    """Train mode, same seed: identical dropout masks and rates, so identical outputs (HAT's retraining)."""
    space, sub = builders.tiny, _narrow(builders.tiny)
    supernet = builders.supernet(task, space, "none", dropout=0.3, activation_dropout=0.2)
    supernet.set_subnet(sub)
    cfg = SubnetModelConfig(space=space.name, dropout=0.3, activation_dropout=0.2)
    standalone = ShiftAddTransformer.from_subnet(cfg, task, space, sub)
    standalone.load_state_dict(extract_subnet_state(supernet, sub))
    batch = builders.token_batch(task, seed=5)
    outputs = []
    for model in (supernet.train(), standalone.train()):
        torch.manual_seed(11)
        outputs.append(model(*batch)[0])
    assert_close(outputs[0], outputs[1])
    torch.manual_seed(11)
    eval_out = supernet.eval()(*batch)[0]
    assert not torch.allclose(outputs[0], eval_out)  # dropout did act


def test_build_model_stores_the_dropout_widths(task, tmp_path):
    """Resolved widths are written into the model config (what checkpoints save); 0 means the space's largest."""
    space = get_space("tiny")
    cfg = SubnetModelConfig(space="tiny", subnet=_narrow(space).to_json())
    ShiftAddTransformer.build_model(cfg, task)
    assert (cfg.encoder_dropout_width, cfg.decoder_dropout_width) == (128, 128)
