"""Tests of the vision supernet, standalone networks and extraction (fairseq_shiftadd.vision.models)."""
import random
import re

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.vision.cost import VisionCostModel
from fairseq_shiftadd.vision.models import VisionNet, VisionSupernet, extract_subnet, recalibrate_batchnorm
from fairseq_shiftadd.vision.space import BlockConfig, VisionBlock, get_space, largest, sample, smallest, uniform_subnet

SPACE = get_space("digits")
MODES = ("none", "shared", "heterogeneous")


def _perturb(supernet: VisionSupernet, seed: int) -> None:
    """Non-trivial BatchNorm statistics, affine parameters (every residual branch live) and remaps (as after
    training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(supernet.named_parameters()) + list(supernet.named_buffers()):
            if "log_scale" in name:
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("running_var") or re.search(r"norms\.\w+\.\d\.weight$", name):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)  # the last gamma starts at 0
            elif name.endswith("running_mean") or re.search(r"norms\.\w+\.\d\.bias$", name):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))


def _block_subnet(block: VisionBlock, seed: int):
    """A random subnet whose blocks are all ``block`` where a stage allows it."""
    rng = random.Random(seed)
    sub = sample(SPACE, rng)
    return uniform_subnet(SPACE, [s.width for s in sub.stages], [len(s.blocks) for s in sub.stages],
                          [block if block in s.blocks else s.blocks[0] for s in SPACE.stages],
                          rng.choice(SPACE.expansions))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", list(VisionBlock))
def test_supernet_equals_extracted_subnet(mode, block):
    torch.manual_seed(0)
    supernet = VisionSupernet(SPACE, mode)
    _perturb(supernet, 1)
    assert all(norms[2].weight.min() >= 0.5 for stage in supernet.stages for b in stage for norms in b.norms.values())
    supernet.eval()
    x = torch.randn(5, 1, 8, 8)
    for seed in range(3):
        sub = _block_subnet(block, seed)
        assert any(b.block is block for s in sub.stages for b in s.blocks)
        standalone = extract_subnet(supernet, sub).eval()
        assert_close(standalone(x), supernet(x, sub), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_supernet_equals_extracted_random_hybrids_after_training_steps(mode):
    torch.manual_seed(0)
    supernet = VisionSupernet(SPACE, mode)
    _perturb(supernet, 2)  # live residual branches
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.05)
    rng = random.Random(mode)
    x = torch.randn(8, 1, 8, 8)
    for _ in range(3):
        sub = sample(SPACE, rng)
        optimizer.zero_grad()
        (supernet(x, sub).logsumexp(1).mean() + supernet.sharing_regulariser([sub])).backward()
        optimizer.step()
    for _ in range(3):
        sub = sample(SPACE, rng)
        supernet.set_subnet(sub)
        recalibrate_batchnorm(supernet, [torch.randn(16, 1, 8, 8)])
        assert_close(extract_subnet(supernet, sub).eval()(x), supernet(x), rtol=1e-5, atol=1e-5)


def test_fresh_supernet_blocks_start_as_their_shortcut():
    """Zero-init residual: every candidate's last BatchNorm scale is 0, so a block inside a stage (identity
    shortcut) returns its (non-negative) input whatever its type."""
    torch.manual_seed(0)
    supernet = VisionSupernet(SPACE, "heterogeneous")
    assert all(norms[2].weight.abs().sum() == 0 for stage in supernet.stages for block in stage
               for norms in block.norms.values())
    x = torch.rand(4, 48, 4, 4)
    for block_type in SPACE.stages[1].blocks:
        assert_close(supernet.stages[1][1](x, BlockConfig(block_type, 1.0), 48, 1), x)


def test_standalone_has_exactly_its_parameters():
    for seed in range(4):
        sub = sample(SPACE, random.Random(seed))
        fresh = VisionNet(SPACE, sub, shift_mode="q")
        extracted = extract_subnet(VisionSupernet(SPACE, "heterogeneous"), sub, shift_mode="q")
        assert {k: v.shape for k, v in fresh.state_dict().items()} == \
            {k: v.shape for k, v in extracted.state_dict().items()}
        stored = sum(p.numel() for p in fresh.parameters())  # q mode: one latent weight per shift weight
        assert stored == VisionCostModel(SPACE).metrics(sub)["params"]
        assert not any("log_scale" in k for k in extracted.state_dict())  # remaps baked in


def test_sharing_modes_store_one_weight_per_slot():
    counts = {m: sum(p.numel() for p in VisionSupernet(SPACE, m).parameters()) for m in MODES}
    assert counts["shared"] < counts["heterogeneous"] < counts["none"]


def test_regulariser_only_in_heterogeneous_mode_for_add_blocks():
    add_sub = uniform_subnet(SPACE, [16, 32, 48], [1, 1, 1], [VisionBlock.ADD, VisionBlock.ADD, VisionBlock.CONV], 1.0)
    conv_sub = smallest(SPACE, VisionBlock.CONV)
    hetero = VisionSupernet(SPACE, "heterogeneous")
    assert hetero.sharing_regulariser([add_sub]) > 0
    assert hetero.sharing_regulariser([conv_sub]) == 0
    assert VisionSupernet(SPACE, "shared").sharing_regulariser([add_sub]) == 0


def test_recalibration_gives_the_batch_statistics():
    torch.manual_seed(0)
    net = VisionNet(SPACE, largest(SPACE))
    x = torch.randn(32, 1, 8, 8) * 2 + 1
    recalibrate_batchnorm(net, [x[:16], x[16:]])
    assert not net.training
    stem_bn = net.stem[1]
    conv_out = net.stem[0](x)
    assert_close(stem_bn.running_mean, conv_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_bad_inputs_give_one_line_errors():
    supernet = VisionSupernet(SPACE, "shared")
    with pytest.raises(ValueError, match=r"^images of shape \(2, 3, 8, 8\) do not fit space 'digits': expected"):
        supernet(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"^images of shape \(2, 1, 16, 16\)"):
        VisionNet(SPACE, largest(SPACE))(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="sharing='hetero' not in allowed values"):
        VisionSupernet(SPACE, "hetero")
    bigger = get_space("digits", image_size=16, num_classes=3)
    assert VisionNet(bigger, largest(bigger))(torch.randn(2, 1, 16, 16)).shape == (2, 3)
