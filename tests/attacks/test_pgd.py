"""PGD (Madry et al. 2018): projections, strength, a reference loop, seeding, side effects, checks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sparse.attacks import as_channel_stats, pgd

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def view(stat):
    return torch.tensor(stat).view(1, -1, 1, 1)


def normalise(pixels, mean=MEAN, std=STD):
    return (pixels - view(mean)) / view(std)


def pixels_of(x, mean=MEAN, std=STD):
    return x * view(std) + view(mean)


class PixelsOf(nn.Module):
    def forward(self, x):
        return pixels_of(x)


def trained_linear(seed=0, n=256, steps=200):
    """A linear classifier fitted to linearly separable (B, 3, 4, 4) pixel images."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g)
    w = torch.randn(48, 4, generator=g)
    y = ((x.flatten(1) - 0.5) @ w).argmax(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, x, y


def reference_pgd(model, x, y, eps, alpha, steps, delta):
    """advertorch's LinfPGDAttack loop (the paper's reference code), on pixels, from ``delta``."""
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        loss.backward()
        delta = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    model.zero_grad(set_to_none=True)
    return (x + delta).detach()


@pytest.mark.parametrize("normalised", [False, True])
def test_stays_in_the_eps_ball_and_the_pixel_range(normalised):
    model, x, y = trained_linear()
    x = x[:64].clone()
    x[:, 0] = 0.0  # pixels on both bounds: the range projection must act
    x[:, 1] = 1.0
    eps = 16 / 255
    kwargs = {"mean": MEAN, "std": STD} if normalised else {}
    x_in = normalise(x) if normalised else x
    x_adv = pgd(model, x_in, y[:64], eps=eps, alpha=4 / 255, steps=5, **kwargs)
    p_adv = pixels_of(x_adv) if normalised else x_adv
    assert (p_adv - x).abs().max() <= eps + 1e-5
    assert p_adv.min() >= -1e-6 and p_adv.max() <= 1 + 1e-6
    assert (p_adv - x).abs().max() > eps / 2  # it did move
    assert x_adv.shape == x_in.shape and x_adv.dtype == x_in.dtype and not x_adv.requires_grad


def test_raises_the_loss_and_lowers_the_accuracy():
    model, x, y = trained_linear()
    clean_loss, clean_acc = F.cross_entropy(model(x), y), (model(x).argmax(1) == y).float().mean()
    assert clean_acc > 0.9
    x_adv = pgd(model, x, y, eps=0.05, alpha=0.01, steps=10)
    noisy = (x + 0.05 * torch.randn_like(x).sign()).clamp(0, 1)  # random corners of the same ball
    adv_loss = F.cross_entropy(model(x_adv), y)
    assert adv_loss > 2 * clean_loss
    assert adv_loss > F.cross_entropy(model(noisy), y)
    assert (model(x_adv).argmax(1) == y).float().mean() < clean_acc - 0.2


@pytest.mark.parametrize("normalised", [False, True])
def test_matches_the_reference_loop_with_the_normalisation_inside_the_model(normalised):
    model, x, y = trained_linear()
    x, y = x[:32], y[:32]
    start = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) - 1) * 0.03
    expected = reference_pgd(model, x, y, eps=0.03, alpha=0.01, steps=7, delta=start)
    if normalised:  # the reference puts the normalisation in the model and attacks pixels
        on_normalised = nn.Sequential(PixelsOf(), model)  # the same function of normalised inputs
        got = pixels_of(pgd(on_normalised, normalise(x), y, eps=0.03, alpha=0.01, steps=7,
                            mean=MEAN, std=STD, generator=torch.Generator().manual_seed(3)))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    else:
        got = pgd(model, x, y, eps=0.03, alpha=0.01, steps=7, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_zero_eps_and_zero_steps():
    model, x, y = trained_linear()
    assert torch.equal(pgd(model, x, y, eps=0.0), x)
    assert torch.equal(pgd(model, x, y, steps=0, random_start=False), x)
    start = pgd(model, x, y, eps=0.1, steps=0, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(start, x) and (start - x).abs().max() <= 0.1 + 1e-6  # the random start alone


def test_seeded_random_start_is_reproducible():
    model, x, y = trained_linear()
    a, b, c = (pgd(model, x, y, eps=0.05, alpha=0.01, steps=2, generator=torch.Generator().manual_seed(s))
               for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    plain = pgd(model, x, y, eps=0.05, alpha=0.01, steps=2, random_start=False)
    assert torch.equal(plain, pgd(model, x, y, eps=0.05, alpha=0.01, steps=2, random_start=False))


def test_leaves_no_gradients_and_fires_no_parameter_hooks():
    model, x, y = trained_linear()
    fired = []
    model[1].weight.register_hook(lambda g: fired.append(g))
    pgd(model, x, y, steps=3)
    assert all(p.grad is None for p in model.parameters())
    assert fired == []
    model[1].bias.grad = torch.ones_like(model[1].bias)  # an accumulated gradient stays untouched
    pgd(model, x, y, steps=3)
    assert torch.equal(model[1].bias.grad, torch.ones(4))


def test_runs_in_the_callers_mode_and_restores_every_modules_flag():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 4))
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 4, (8,))
    model.train()
    model[3].eval()  # a frozen submodule keeps its own mode
    pgd(model, x, y, steps=4)
    assert [m.training for m in model.modules()] == [True, True, True, True, False, True]
    assert model[2].num_batches_tracked == 4  # train mode: batch norm ran on every step
    model.eval()
    pgd(model, x, y, steps=4)
    assert not any(m.training for m in model.modules()) and model[2].num_batches_tracked == 4


@pytest.mark.parametrize("normalised", [False, True])
class FlipsToEval(nn.Linear):
    def forward(self, x):
        self.eval()  # a forward that switches modes (as some wrappers do)
        return super().forward(x.flatten(1))


def test_restores_modes_a_forward_switched():
    model = nn.Sequential(FlipsToEval(48, 4)).train()
    pgd(model, torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 3]), steps=2)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("normalised", [False, True])
def test_works_inside_inference_mode(normalised):
    model, x, y = trained_linear()
    kwargs = {"mean": MEAN, "std": STD} if normalised else {}
    x = normalise(x) if normalised else x
    expected = pgd(model, x, y, steps=3, random_start=False, **kwargs)
    with torch.inference_mode():  # as in Lightning's test loop: batch and statistics are inference tensors
        x_inf, y_inf = x.clone(), y.clone()
        stats = {k: torch.tensor(v) for k, v in kwargs.items()}
        got = pgd(model, x_inf, y_inf, steps=3, random_start=False, **stats)
    assert torch.equal(got, expected)


def test_keeps_the_input_dtype():
    model, x, y = trained_linear()
    x_adv = pgd(model.double(), x.double(), y, steps=2)
    assert x_adv.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -0.1}, "`eps` must be a finite number >= 0, got -0.1"),
        ({"alpha": float("nan")}, "`alpha` must be a finite number >= 0"),
        ({"steps": -1}, "`steps` must be an integer >= 0, got -1"),
        ({"steps": 2.0}, "`steps` must be an integer >= 0, got 2.0"),
        ({"random_start": 1}, "`random_start` must be True or False, got 1"),
        ({"mean": MEAN}, "`mean` and `std` must be given together"),
        ({"mean": MEAN, "std": STD[:2]}, "`mean` and `std` must have the same length, got 3 and 2"),
        ({"mean": MEAN, "std": (0.2, 0.0, 0.2)}, r"`std` must be positive in every channel, got \[0.2"),
        ({"mean": (0.5, 0.5), "std": (0.2, 0.2)}, "`mean` has 2 values but `x` of shape"),
        ({"mean": "a", "std": 1.0}, "`mean` must be a number, a sequence of numbers or a tensor, got 'a'"),
        ({"generator": 3}, "`generator` must be a torch.Generator or None, got int"),
    ],
)
def test_argument_errors_name_the_argument(kwargs, match):
    model, x, y = trained_linear(steps=1)
    if "mean" in kwargs and "std" in kwargs and len(kwargs["mean"]) == 3:
        x = normalise(x)
    with pytest.raises(ValueError, match=match):
        pgd(model, x, y, **kwargs)


def test_refuses_normalised_inputs_without_mean_and_std():
    model, x, y = trained_linear(steps=1)
    with pytest.raises(ValueError, match=r"`x` must lie in \[0, 1\] in pixel space \(pass `mean`/`std`"):
        pgd(model, normalise(x), y)
    with pytest.raises(ValueError, match="`x` must be a floating-point tensor, got torch.uint8"):
        pgd(model, (x * 255).to(torch.uint8), y)


def test_channel_stats_accept_numbers_sequences_and_tensors():
    mean, std = as_channel_stats(0.5, torch.tensor([0.25]))
    assert mean.tolist() == [0.5] and std.tolist() == [0.25]
    assert as_channel_stats(None, None) is None
    model, x, y = trained_linear(steps=1)
    x_adv = pgd(model, (x - 0.5) / 0.25, y, eps=0.02, mean=0.5, std=0.25)  # one value for every channel
    assert (x_adv * 0.25 + 0.5 - x).abs().max() <= 0.02 + 1e-5
