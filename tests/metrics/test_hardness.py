"""EL2N, GraNd and the scores file against hand computations and per-sample autograd loops."""

import math

import pytest
import torch
from torch import nn

from lightning_sparse.metrics.hardness import average_scores, el2n_scores, grand_scores, read_scores, save_scores


# --------------------------------------------------------------------------- EL2N
def test_el2n_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5]])
    targets = torch.tensor([0, 2, 0])
    expected = []
    for row, t in zip(logits.tolist(), targets.tolist()):
        e = [math.exp(v) for v in row]
        p = [v / sum(e) for v in e]
        expected.append(math.sqrt(sum((pk - (k == t)) ** 2 for k, pk in enumerate(p))))
    torch.testing.assert_close(el2n_scores(logits, targets), torch.tensor(expected))
    # uniform over 3 classes: sqrt((2/3)^2 + 2 (1/3)^2) = sqrt(2/3)
    assert el2n_scores(logits, targets)[1].item() == pytest.approx(math.sqrt(2 / 3))


def test_el2n_orders_confident_right_below_confident_wrong():
    logits = torch.tensor([[8.0, 0.0], [0.0, 8.0]])
    scores = el2n_scores(logits, torch.tensor([0, 0]))
    assert scores[0] < 0.01 and scores[1] > 1.4  # at most sqrt(2)


@pytest.mark.parametrize(("logits", "targets", "match"), [
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), "`logits` must be a \\(B, C\\) tensor"),
    (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "`targets` must be an integer tensor of shape \\(4,\\)"),
    (torch.zeros(4, 3), torch.zeros(4), "`targets` must be an integer tensor"),
])
def test_el2n_refuses_bad_shapes(logits, targets, match):
    with pytest.raises(ValueError, match=match):
        el2n_scores(logits, targets)


# --------------------------------------------------------------------------- GraNd
def _loop_grand(model, x, y, params=None, loss_fn=nn.functional.cross_entropy):
    params = [p for p in model.parameters() if p.requires_grad] if params is None else params
    out = []
    for i in range(len(x)):
        loss = loss_fn(model(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, params)
        out.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    return torch.stack(out)


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def test_grand_matches_per_sample_autograd_loops():
    model = _conv_net()
    x, y = torch.randn(7, 3, 6, 6), torch.randint(0, 5, (7,))
    model.train()
    for _ in range(2):  # non-trivial running statistics
        model(torch.randn(16, 3, 6, 6) * 2 + 1)
    model.eval()
    torch.testing.assert_close(grand_scores(model, x, y), _loop_grand(model, x, y), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grand_scores(model, x, y, chunk_size=3), _loop_grand(model, x, y),
                               rtol=1e-4, atol=1e-6)


def test_grand_over_chosen_parameters_and_a_custom_loss():
    model = _conv_net().eval()
    x, y = torch.randn(5, 3, 6, 6), torch.randint(0, 5, (5,))
    head = dict(model[4].named_parameters(prefix="4"))

    def loss_fn(logits, target):
        return nn.functional.cross_entropy(logits, target, label_smoothing=0.1)

    expected = _loop_grand(model, x, y, params=list(head.values()), loss_fn=loss_fn)
    torch.testing.assert_close(grand_scores(model, x, y, params=head, loss_fn=loss_fn), expected,
                               rtol=1e-4, atol=1e-6)
    assert (grand_scores(model, x, y, params=head) < grand_scores(model, x, y)).all()  # fewer terms


def test_grand_refuses_batchnorm_in_training_mode_and_bad_lengths():
    model = _conv_net().train()
    with pytest.raises(ValueError, match="BatchNorm layers in training mode .*1.*model.eval"):
        grand_scores(model, torch.randn(2, 3, 6, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one entry per sample"):
        grand_scores(model.eval(), torch.randn(2, 3, 6, 6), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="`params` must name at least one parameter"):
        grand_scores(model, torch.randn(2, 3, 6, 6), torch.tensor([0, 1]), params={})


# --------------------------------------------------------------------------- averages and files
def test_average_scores_is_the_mean_over_runs():
    runs = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 0.0]), torch.tensor([2.0, 5.0, 0.0])]
    torch.testing.assert_close(average_scores(runs), torch.tensor([2.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match="non-empty list"):
        average_scores([])
    with pytest.raises(ValueError, match="same shape"):
        average_scores([torch.zeros(3), torch.zeros(4)])


def test_scores_files_round_trip_and_average_by_position(tmp_path):
    save_scores(tmp_path / "a.pt", torch.tensor([0.3, 0.9, 0.1]), torch.tensor([10, 2, 5]), "el2n", 3)
    save_scores(tmp_path / "b.pt", torch.tensor([0.5, 0.1, 0.7]), torch.tensor([2, 5, 10]), "el2n", 3)
    stored = torch.load(tmp_path / "a.pt", weights_only=True)
    assert stored["score"] == "el2n" and stored["epoch"] == 3 and stored["scores"].dtype == torch.float32
    scores, indices = read_scores([tmp_path / "a.pt", str(tmp_path / "b.pt")])
    assert indices.tolist() == [2, 5, 10]
    torch.testing.assert_close(scores, torch.tensor([0.7, 0.1, 0.5]))
    save_scores(tmp_path / "c.pt", torch.tensor([0.5, 0.1]), torch.tensor([2, 5]), "el2n", 3)
    with pytest.raises(ValueError, match="scores other samples"):
        read_scores([tmp_path / "a.pt", tmp_path / "c.pt"])
    save_scores(tmp_path / "g.pt", torch.tensor([0.5, 0.1, 0.7]), torch.tensor([2, 5, 10]), "grand", 3)
    with pytest.raises(ValueError, match="different scores"):
        read_scores([tmp_path / "a.pt", tmp_path / "g.pt"])
    save_scores(tmp_path / "nan.pt", torch.tensor([0.5, float("nan")]), torch.tensor([2, 5]), "el2n", 3)
    with pytest.raises(ValueError, match="holds 1 non-finite scores"):
        read_scores(tmp_path / "nan.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="is not a scores file"):
        read_scores(tmp_path / "ckpt.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_scores(tmp_path / "none.pt")
    with pytest.raises(ValueError, match="distinct positions"):
        save_scores(tmp_path / "d.pt", torch.zeros(2), torch.tensor([1, 1]), "el2n", 1)
