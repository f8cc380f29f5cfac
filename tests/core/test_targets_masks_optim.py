import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_sparse.core import find_targets, mask_checksum, pack_mask, reset_optimizer_state, unpack_mask


def net():
    return nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv3d(4, 4, 1), nn.BatchNorm2d(4), nn.Embedding(5, 4),
        nn.LayerNorm(4), nn.Linear(4, 3),
    )


def test_default_targets_are_linear_and_conv_weights_only():
    names = [t.name for t in find_targets(net())]
    assert names == ["0.weight", "1.weight", "2.weight", "6.weight"]


def test_include_exclude_and_errors():
    assert [t.name for t in find_targets(net(), include=["*.bias"], exclude=["0.*"])] == [
        "1.bias", "2.bias", "3.bias", "5.bias", "6.bias"]
    with pytest.raises(ValueError, match="`include` pattern 'nope.*' matches no parameter"):
        find_targets(net(), include=["nope.*"])
    with pytest.raises(ValueError, match="no sparsifiable parameter"):
        find_targets(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))
    with pytest.raises(ValueError, match="`granularity` must be one of"):
        find_targets(net(), granularity="channel")
    with pytest.warns(UserWarning, match="`exclude` pattern"):
        find_targets(net(), exclude=["zzz"])


def test_kernel_granularity_units_expand_and_reduce():
    (t,) = find_targets(nn.Conv2d(3, 5, 3), granularity="kernel")
    assert t.unit_shape == (5, 3) and t.unit_size == 9
    unit = torch.zeros(5, 3, dtype=torch.bool)
    unit[1, 2] = True
    full = t.expand(unit)
    assert full.shape == (5, 3, 3, 3) and int(full.sum()) == 9 and full[1, 2].all()
    assert t.reduce(torch.ones(5, 3, 3, 3)).eq(9).all()
    (lin,) = find_targets(nn.Linear(3, 2), granularity="kernel")
    assert lin.unit_shape == (2, 3)  # linear layers have no kernel: element-wise


def test_allowed_regions_are_validated():
    region = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="allows no position"):
        find_targets(nn.Linear(3, 2), allowed_regions={"weight": region})
    with pytest.raises(ValueError, match="must have shape"):
        find_targets(nn.Linear(3, 2), allowed_regions={"weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not sparsified"):
        find_targets(nn.Linear(3, 2), allowed_regions={"bias": torch.ones(2, dtype=torch.bool)})
    region[0, 0] = True
    (t,) = find_targets(nn.Linear(3, 2), allowed_regions={"weight": region})
    assert t.capacity == 1


def test_group_label_regions_are_validated_and_reduced_to_kernels():
    labels = torch.tensor([[1, 1, 0], [2, 0, 2]])
    (t,) = find_targets(nn.Linear(3, 2), allowed_regions={"weight": labels})
    assert t.allowed.tolist() == [[True, True, False], [True, False, True]]
    assert t.groups.dtype == torch.int64 and t.group_capacities == {1: 2, 2: 2} and t.capacity == 4
    with pytest.raises(ValueError, match="must be a bool tensor or an integer tensor of group labels, got dtype torch.float32"):
        find_targets(nn.Linear(3, 2), allowed_regions={"weight": labels.float()})
    with pytest.raises(ValueError, match="group labels must be >= 0"):
        find_targets(nn.Linear(3, 2), allowed_regions={"weight": -labels})
    with pytest.raises(ValueError, match="allows no position"):
        find_targets(nn.Linear(3, 2), allowed_regions={"weight": torch.zeros(2, 3, dtype=torch.long)})
    conv = nn.Conv1d(2, 4, 5)
    labels = torch.zeros(4, 2, 5, dtype=torch.long)
    labels[:2, :, :2], labels[2:, :, :4] = 1, 2  # DSN-like: group 1 the first 2 taps, group 2 the first 4
    (t,) = find_targets(conv, granularity="kernel", allowed_regions={"weight": labels})
    assert t.groups.tolist() == [[1, 1], [1, 1], [2, 2], [2, 2]]
    assert find_targets(conv, allowed_regions={"weight": labels})[0].group_capacities == {1: 8, 2: 16}
    labels[0, 0, 4] = 2  # one kernel now holds elements of groups 1 and 2
    with pytest.raises(ValueError, match="puts elements of one kernel in different groups"):
        find_targets(conv, granularity="kernel", allowed_regions={"weight": labels})
    assert find_targets(conv, allowed_regions={"weight": labels.bool()})[0].groups is None


@settings(max_examples=50, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_pack_unpack_roundtrip(shape, seed):
    m = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.5
    packed = pack_mask(m)
    assert packed.dtype == torch.uint8 and packed.numel() == (m.numel() + 7) // 8
    assert torch.equal(unpack_mask(packed, m.shape), m)


def test_checksum_sees_a_single_moved_bit():
    a = {"x": torch.tensor([True, False, True, False])}
    b = {"x": torch.tensor([True, True, False, False])}
    assert not torch.equal(mask_checksum(a), mask_checksum(b))
    assert torch.equal(mask_checksum(a), mask_checksum({"x": a["x"].clone()}))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9),
        lambda p: torch.optim.Adam([p], lr=0.1, amsgrad=True),
        lambda p: torch.optim.AdamW([p], lr=0.1),
        lambda p: torch.optim.RMSprop([p], lr=0.1, momentum=0.9, centered=True),
        lambda p: torch.optim.Adagrad([p], lr=0.1, initial_accumulator_value=0.5),
        lambda p: torch.optim.NAdam([p], lr=0.1),
    ],
)
def test_every_param_shaped_state_is_reset_at_changed_positions_only(make):
    p = nn.Parameter(torch.randn(4, 5))
    opt = make(p)
    for _ in range(2):
        p.grad = torch.randn(4, 5)
        opt.step()
    before = {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
    changed = torch.zeros(4, 5, dtype=torch.bool)
    changed[0, :2] = True
    keys = reset_optimizer_state(opt, p, changed)
    assert keys and all(before[k].shape == p.shape for k in keys)
    fresh = opt.param_groups[0].get("initial_accumulator_value", 0.0)
    for k in keys:
        v = opt.state[p][k]
        assert torch.all(v[changed] == (fresh if k == "sum" else 0.0))
        assert torch.equal(v[~changed], before[k][~changed])
    for k, v in before.items():  # scalars such as `step` untouched
        if k not in keys:
            assert torch.equal(opt.state[p][k], v)


def test_maskset_state_roundtrip_and_mismatch():
    from lightning_sparse.core import MaskSet

    net = nn.Sequential(nn.Linear(5, 4), nn.Conv2d(2, 3, 3))
    targets = find_targets(net, granularity="kernel")
    g = torch.Generator().manual_seed(0)
    masks = {t.name: torch.rand(t.unit_shape, generator=g) > 0.5 for t in targets}
    ms = MaskSet(targets, masks)
    ms.set("0.weight", ~masks["0.weight"])
    back = MaskSet.from_state_dict(targets, ms.state_dict())
    assert all(torch.equal(back[n], ms[n]) and torch.equal(back.ever[n], ms.ever[n]) for n in ms)
    assert back.exploration_rate() == ms.exploration_rate() and ms.ever["0.weight"].all()
    params = dict(net.named_parameters())
    ms.apply(params)
    assert torch.equal(params["1.weight"] != 0, ms.full("1.weight") & (params["1.weight"] != 0))
    assert not params["1.weight"][~ms.full("1.weight")].any()
    with pytest.raises(ValueError, match="do not match the sparsified parameters"):
        MaskSet.from_state_dict(find_targets(nn.Linear(5, 4)), ms.state_dict())
    with pytest.raises(ValueError, match="must be bool of shape"):
        ms.set("0.weight", torch.ones(3, 3, dtype=torch.bool))


def test_maskset_apply_by_multiplying_equals_masked_fill():
    """`apply(multiply=True)`: small tensors multiplied by a cached keep-mask (renewed by `set`),
    large ones masked_fill_; the same zeros either way for finite values."""
    import lightning_sparse.core.masks as masks_module
    from lightning_sparse.core import MaskSet

    net = nn.Sequential(nn.Linear(6, 5), nn.Conv2d(2, 3, 3), nn.Linear(300, 300))  # 90,000 > 2^16 elements
    targets = find_targets(net, granularity="kernel")
    g = torch.Generator().manual_seed(1)
    ms = MaskSet(targets, {t.name: torch.rand(t.unit_shape, generator=g) > 0.5 for t in targets})
    assert net[2].weight.numel() > masks_module.MULTIPLY_MAX_ELEMENTS >= net[1].weight.numel()
    for step in range(2):
        params = {n: p.detach().clone() for n, p in net.named_parameters()}
        expect = {n: t.clone() for n, t in params.items()}
        MaskSet.apply(ms, expect)  # masked_fill_
        ms.apply(params, multiply=True)
        assert all(torch.equal(params[n], expect[n]) for n in ms)
        assert set(ms._keep) == {"0.weight", "1.weight"}  # the large layer keeps no float copy
        ms.set("0.weight", ~ms["0.weight"])  # the next pass must use the new mask
        assert "0.weight" not in ms._keep
