import math

import pytest
import torch
from torch import nn

from lightning_sparse.core.saliency import (
    grasp_scores,
    iterative_masks,
    magnitude_scores,
    schedule_densities,
    snip_scores,
    synflow_masks,
    synflow_scores,
    topk_masks,
)


def keep(density, n):
    return math.floor(density * n + 0.5)


def bits(t):
    """The raw bits of a tensor, so -0.0 != 0.0 and NaN == NaN."""
    return t.detach().contiguous().view(torch.int64 if t.dtype == torch.float64 else torch.int32) \
        if t.is_floating_point() else t


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(bits(a[k]), bits(b[k])) for k in a)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- a tiny two-layer tanh net with a hand-written gradient -----------------------------------

def tiny():
    g = torch.Generator().manual_seed(0)
    w1 = nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))
    w2 = nn.Parameter(torch.randn(2, 4, generator=g, dtype=torch.float64))
    batches = [(torch.randn(5, 3, generator=g, dtype=torch.float64),
                torch.randn(5, 2, generator=g, dtype=torch.float64)) for _ in range(2)]
    return w1, w2, batches


def loss_fn(w1, w2, x, t):
    return 0.5 * ((torch.tanh(x @ w1.T) @ w2.T - t) ** 2).sum()


def manual_grad(w1, w2, batches):
    """dL/dW1, dL/dW2 of the summed loss, written out by hand (no autograd)."""
    g1, g2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for x, t in batches:
        h = torch.tanh(x @ w1.T)  # (B, 4)
        e = h @ w2.T - t  # (B, 2)
        g2 += e.T @ h
        g1 += ((e @ w2) * (1 - h ** 2)).T @ x
    return g1, g2


def closures(w1, w2, batches):
    return [lambda x=x, t=t: loss_fn(w1, w2, x, t) for x, t in batches]


def test_magnitude_scores():
    w = nn.Parameter(torch.tensor([[-1.5, 0.0], [2.0, -0.25]]))
    assert torch.equal(magnitude_scores({"w": w})["w"], torch.tensor([[1.5, 0.0], [2.0, 0.25]]))


def test_snip_matches_hand_gradient():
    w1, w2, batches = tiny()
    scores = snip_scores({"w1": w1, "w2": w2}, closures(w1, w2, batches))
    g1, g2 = manual_grad(w1.detach(), w2.detach(), batches)
    torch.testing.assert_close(scores["w1"], (g1 * w1.detach()).abs())
    torch.testing.assert_close(scores["w2"], (g2 * w2.detach()).abs())


def fd_hessian_gradient(a, b, batches, eps=1e-5):
    """H g by a central difference of the hand gradient along g."""
    g1, g2 = manual_grad(a, b, batches)
    p1, p2 = manual_grad(a + eps * g1, b + eps * g2, batches)
    m1, m2 = manual_grad(a - eps * g1, b - eps * g2, batches)
    return (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps)


def test_grasp_matches_finite_difference_hessian_gradient_product():
    w1, w2, batches = tiny()
    scores = grasp_scores({"w1": w1, "w2": w2}, closures(w1, w2, batches))
    a, b = w1.detach(), w2.detach()
    hg1, hg2 = fd_hessian_gradient(a, b, batches)
    # GraSP removes the largest -w * Hg, so the score to keep (higher = keep) is w * Hg
    torch.testing.assert_close(scores["w1"], a * hg1, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(scores["w2"], b * hg2, rtol=1e-6, atol=1e-8)


def test_grasp_keeps_the_smallest_paper_scores():
    w1, w2, batches = tiny()
    params = {"w1": w1, "w2": w2}
    scores = grasp_scores(params, closures(w1, w2, batches))
    masks = topk_masks(scores, 0.25)
    hg = fd_hessian_gradient(w1.detach(), w2.detach(), batches)
    paper = torch.cat([(-p.detach() * h).flatten() for p, h in zip(params.values(), hg)])  # S(-w) = -w * Hg
    kept = torch.cat([masks[n].flatten() for n in params])
    assert paper[kept].max() <= paper[~kept].min()


@pytest.mark.parametrize("score_fn", [snip_scores, grasp_scores])
def test_gradient_scores_leave_grads_flags_and_weights_alone(score_fn):
    w1, w2, batches = tiny()
    other = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
    old = torch.full_like(w1, 7.0)
    w1.grad = old
    other.grad = torch.tensor(3.0, dtype=torch.float64)
    w2.requires_grad_(False)
    before = (w1.detach().clone(), w2.detach().clone())
    fns = [lambda x=x, t=t: other * loss_fn(w1, w2, x, t) for x, t in batches]
    scores = score_fn({"w1": w1, "w2": w2}, fns)
    assert w1.grad is old and torch.equal(w1.grad, torch.full_like(w1, 7.0))
    assert w2.grad is None and not w2.requires_grad and w1.requires_grad
    assert other.grad.item() == 3.0
    assert torch.equal(bits(w1), bits(before[0])) and torch.equal(bits(w2), bits(before[1]))
    assert scores["w2"].abs().sum() > 0 and not scores["w1"].requires_grad


def test_snip_accepts_a_single_closure_and_sums_closures():
    w1, w2, batches = tiny()
    params = {"w1": w1, "w2": w2}
    fns = closures(w1, w2, batches)
    both = snip_scores(params, fns)
    g1 = torch.autograd.grad(fns[0]() + fns[1](), [w1])[0]
    torch.testing.assert_close(both["w1"], (g1 * w1.detach()).abs())
    single = snip_scores(params, fns[0])
    assert not torch.allclose(single["w1"], both["w1"])


# --- SynFlow ------------------------------------------------------------------------------------

def test_synflow_matches_closed_form_of_a_linear_net():
    g = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(4, 3, generator=g))
        net[1].weight.copy_(torch.randn(2, 4, generator=g))
    w1, w2 = net[0].weight.detach().abs(), net[1].weight.detach().abs()
    scores = synflow_scores(net, dict(net.named_parameters()), (3,))
    # R = 1^T |W2| |W1| 1: dR/dW1[i, j] = (1^T |W2|)[i], dR/dW2[k, i] = (|W1| 1)[i]
    torch.testing.assert_close(scores["0.weight"], w2.sum(0)[:, None] * w1)
    torch.testing.assert_close(scores["1.weight"], w2 * w1.sum(1)[None, :])


def test_synflow_linearises_batchnorm_buffers_in_eval_mode():
    g = torch.Generator().manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(4, 3, generator=g))
        net[2].weight.copy_(torch.randn(2, 4, generator=g))
        net[1].weight.copy_(torch.tensor([-1.0, 0.5, -2.0, 1.5]))
        net[1].bias.copy_(torch.tensor([0.1, -0.2, -0.7, 0.3]))
        net[1].running_mean.copy_(torch.tensor([-0.5, 0.2, -1.0, 3.0]))
        net[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0]))
    net.train()
    w1, w2, bn = net[0].weight.detach().abs(), net[2].weight.detach().abs(), net[1]
    scale = bn.weight.detach().abs() / torch.sqrt(bn.running_var.abs() + bn.eps)
    z = w1.sum(1)  # |W1| 1
    y = scale * (z - bn.running_mean.abs()) + bn.bias.detach().abs()  # eval-mode BN on |state|
    params = {"w1": net[0].weight, "w2": net[2].weight}
    scores = synflow_scores(net, params, (3,))
    torch.testing.assert_close(scores["w1"], (w2.sum(0) * scale)[:, None] * w1)
    torch.testing.assert_close(scores["w2"], (w2 * y[None, :]).abs())


def test_synflow_restores_state_dict_bit_for_bit_and_training_flags():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.neg_()
        net[0].bias[0] = -0.0
        net[1].weight.copy_(torch.tensor([-1.0, 0.5, -2.0, 1.5]))
        net[1].bias.copy_(torch.tensor([0.1, -0.2, -0.0, 0.3]))
        net[1].running_mean.copy_(torch.tensor([-0.5, 0.2, -1.0, 0.0]))
        net[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0]))
        net[1].num_batches_tracked.fill_(5)
    net.train()
    net[3].eval()
    before = snapshot(net)
    params = {n: p for n, p in net.named_parameters() if n.endswith("weight")}
    scores = synflow_scores(net, params, (3,))
    assert same_state(snapshot(net), before)
    assert net.training and net[1].training and not net[3].training
    assert all(p.grad is None for p in net.parameters())
    assert set(scores) == set(params) and all((s >= 0).all() and s.sum() > 0 for s in scores.values())
    with torch.no_grad():  # works inside no_grad too
        again = synflow_scores(net, params, (3,))
    assert all(torch.equal(again[n], scores[n]) for n in scores)
    assert same_state(snapshot(net), before)


def test_synflow_masks_restores_model_and_hits_density():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    before = snapshot(net)
    params = {n: p for n, p in net.named_parameters() if p.dim() > 1}
    masks = synflow_masks(net, params, 0.1, (6,), iterations=10)
    total = sum(p.numel() for p in params.values())
    assert sum(int(m.sum()) for m in masks.values()) == keep(0.1, total)
    assert same_state(snapshot(net), before) and net.training
    one_shot = synflow_masks(net, params, 0.1, (6,), iterations=1)
    expected = topk_masks(synflow_scores(net, params, (6,)), 0.1)
    assert all(torch.equal(one_shot[n], expected[n]) for n in params)


# --- masks --------------------------------------------------------------------------------------

def random_scores(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(5, 4, generator=g), "b": torch.randn(7, generator=g), "c": torch.randn(3, 3, generator=g)}


@pytest.mark.parametrize("density", [0.1, 0.37, 0.5, 0.9, 1.0])
def test_topk_masks_global_keeps_exact_count_of_top_scores(density):
    scores = random_scores()
    masks = topk_masks(scores, density)
    flat = torch.cat([scores[n].flatten() for n in scores])
    kept = torch.cat([masks[n].flatten() for n in scores])
    assert all(masks[n].shape == scores[n].shape and masks[n].dtype == torch.bool for n in scores)
    assert int(kept.sum()) == keep(density, flat.numel())
    if (~kept).any():
        assert flat[kept].min() > flat[~kept].max()


@pytest.mark.parametrize("density", [0.1, 0.37, 0.5, 0.9, 1.0])
def test_topk_masks_layer_keeps_exact_count_per_tensor(density):
    scores = random_scores(1)
    masks = topk_masks(scores, density, scope="layer")
    for n, s in scores.items():
        m = masks[n]
        assert int(m.sum()) == keep(density, s.numel())
        if (~m).any() and m.any():
            assert s[m].min() > s[~m].max()


def test_topk_masks_global_differs_from_layer():
    scores = {"a": torch.arange(4.0) + 10, "b": torch.arange(4.0)}
    glob = topk_masks(scores, 0.5)
    assert glob["a"].all() and not glob["b"].any()
    layer = topk_masks(scores, 0.5, scope="layer")
    assert layer["a"].tolist() == layer["b"].tolist() == [False, False, True, True]


def test_topk_masks_ties_are_exact_and_seeded():
    scores = {"a": torch.zeros(10), "b": torch.zeros(6)}
    first = topk_masks(scores, 0.5)
    assert sum(int(m.sum()) for m in first.values()) == 8
    assert all(torch.equal(first[n], topk_masks(scores, 0.5)[n]) for n in scores)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = topk_masks(scores, 0.5, generator=g1), topk_masks(scores, 0.5, generator=g2)
    assert all(torch.equal(a[n], b[n]) for n in scores)


def test_schedule_densities():
    exp = schedule_densities(0.05, 4)
    assert exp == pytest.approx([0.05 ** (k / 4) for k in range(1, 5)])
    assert exp[-1] == 0.05 and all(x > y for x, y in zip(exp, exp[1:]))
    lin = schedule_densities(0.2, 4, "linear")
    assert lin == pytest.approx([0.8, 0.6, 0.4, 0.2]) and lin[-1] == 0.2
    assert schedule_densities(0.3, 1) == [0.3] == schedule_densities(0.3, 1, "linear")


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("schedule", ["exponential", "linear"])
def test_iterative_masks_follow_schedule_and_never_regrow(scope, schedule):
    g = torch.Generator().manual_seed(0)
    params = {"w": nn.Parameter(torch.randn(10, 10, generator=g) + 5.0), "v": nn.Parameter(-torch.rand(20, generator=g) - 1)}
    originals = {n: p.detach().clone() for n, p in params.items()}
    seen = []

    def score_fn():  # fresh random scores every round: pruned positions would come back if allowed
        seen.append({n: p.detach() != 0 for n, p in params.items()})
        return {n: torch.rand(p.shape, generator=g) for n, p in params.items()}

    density, iterations = 0.1, 5
    masks = iterative_masks(score_fn, params, density, iterations=iterations, schedule=schedule, scope=scope)
    densities = schedule_densities(density, iterations, schedule)
    assert len(seen) == iterations and all(m.all() for m in seen[0].values())
    for k in range(1, iterations):  # round k sees the weights masked by round k - 1's masks
        if scope == "global":
            assert sum(int(m.sum()) for m in seen[k].values()) == keep(densities[k - 1], 120)
        else:
            assert all(int(seen[k][n].sum()) == keep(densities[k - 1], p.numel()) for n, p in params.items())
        assert all(not (seen[k][n] & ~seen[k - 1][n]).any() for n in params)
    assert all(not (masks[n] & ~seen[-1][n]).any() for n in params)
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == keep(density, 120)
    else:
        assert all(int(masks[n].sum()) == keep(density, p.numel()) for n, p in params.items())
    assert all(torch.equal(bits(p), bits(originals[n])) for n, p in params.items())


def test_iterative_masks_restore_weights_on_error():
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0, -4.0]))
    calls = []

    def score_fn():
        calls.append(1)
        if len(calls) == 2:
            return {}
        return magnitude_scores({"w": w})

    with pytest.raises(ValueError, match="`score_fn`"):
        iterative_masks(score_fn, {"w": w}, 0.25, iterations=3)
    assert w.tolist() == [1.0, -2.0, 3.0, -4.0]


# --- argument checks ----------------------------------------------------------------------------

def test_argument_errors():
    w = nn.Parameter(torch.ones(3))
    ok = [lambda: w.sum()]
    with pytest.raises(ValueError, match=r"`density` must be a number in \(0, 1\], got 0"):
        topk_masks({"w": w}, 0.0)
    with pytest.raises(ValueError, match="`density`"):
        schedule_densities(1.5, 3)
    with pytest.raises(ValueError, match=r"`scope` must be one of \('global', 'layer'\), got 'local'"):
        topk_masks({"w": w}, 0.5, scope="local")
    with pytest.raises(ValueError, match="`schedule`"):
        iterative_masks(lambda: {"w": w}, {"w": w}, 0.5, schedule="cubic")
    with pytest.raises(ValueError, match="`iterations` must be an integer >= 1, got 0"):
        iterative_masks(lambda: {"w": w}, {"w": w}, 0.5, iterations=0)
    with pytest.raises(ValueError, match="`scope`"):
        iterative_masks(lambda: {"w": w}, {"w": w}, 0.5, scope="local")
    with pytest.raises(ValueError, match="`params`"):
        snip_scores({}, ok)
    with pytest.raises(ValueError, match="`scores`"):
        topk_masks({}, 0.5)
    with pytest.raises(ValueError, match="`closures`"):
        snip_scores({"w": w}, [])
    with pytest.raises(ValueError, match="`closures`"):
        grasp_scores({"w": w}, [])
    with pytest.raises(ValueError, match="scalar"):
        snip_scores({"w": w}, [lambda: w * 2])
    with pytest.raises(ValueError, match="`input_shape`"):
        synflow_scores(nn.Linear(3, 1), {"w": w}, (0,))
