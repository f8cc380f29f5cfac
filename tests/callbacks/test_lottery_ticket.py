"""LotteryTicket writes tickets (masks + rewind weights); DST(method="static", masks_from=...) trains from them."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyConvNet, TinyNet
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse.callbacks import DynamicSparseTraining, LotteryTicket, load_ticket
from lightning_sparse.callbacks.lottery_ticket import ticket_density

SPARSE = ["net.0.weight", "net.2.weight", "net.4.weight"]


class Weights(Callback):
    """Weights at train start and after every optimizer step."""

    def __init__(self):
        self.start, self.after = None, {}

    def on_train_start(self, trainer, pl_module):
        self.start = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[trainer.global_step] = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def fit(tmp_path, callbacks, model=None, steps=8, ckpt_path=None, save_every=None):
    model = model or TinyNet()
    if save_every:
        callbacks = callbacks + [ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=save_every, save_top_k=-1)]
    Trainer(default_root_dir=tmp_path, max_steps=steps, logger=False, enable_checkpointing=bool(save_every),
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", deterministic=True,
            callbacks=callbacks).fit(model, ckpt_path=ckpt_path)
    return model


def magnitude_top(weights, density):
    flat = torch.cat([weights[n].abs().flatten() for n in SPARSE])
    keep = round(density * flat.numel())
    threshold = flat.topk(keep).values.min()
    return {n: weights[n].abs() >= threshold for n in SPARSE}


@pytest.mark.parametrize("rewind", ["init", 3, "none"])
def test_ticket_round_trip_reproduces_rewound_weights_and_masks(tmp_path, rewind):
    seed_everything(0)
    spy = Weights()
    lt = LotteryTicket(sparsity=0.8, rewind=rewind)
    model = fit(tmp_path, [lt, spy])
    ticket = load_ticket(tmp_path / "ticket.pt")
    final = model.state_dict()
    expected_masks = magnitude_top(final, 0.2)
    for n in SPARSE:
        assert torch.equal(ticket["masks"][n], expected_masks[n]), n
    expected_weights = {"init": spy.start, 3: spy.after[3] if rewind == 3 else None, "none": final}[rewind]
    for k, v in expected_weights.items():
        assert torch.equal(ticket["weights"][k], v), k
    assert ticket["round"] == 1 and ticket["density"] == pytest.approx(0.2)

    # training from the ticket: its masks, its weights (masked) when training starts
    seed_everything(1)
    dst = DynamicSparseTraining("static", sparsity=0.5, masks_from=str(tmp_path / "ticket.pt"), summary=False)
    spy2 = Weights()
    fit(tmp_path / "retrain", [dst, spy2], steps=2)
    for n in SPARSE:
        assert torch.equal(dst.masks[n], ticket["masks"][n]), n
        assert torch.equal(spy2.start[n], ticket["weights"][n] * ticket["masks"][n]), n
    for k in ticket["weights"]:
        if k not in SPARSE:
            assert torch.equal(spy2.start[k], ticket["weights"][k]), k
    assert dst.target_counts == {n: int(ticket["masks"][n].sum()) for n in SPARSE}  # the ticket's, not 0.5


def test_iterative_rounds_reach_the_target_geometrically(tmp_path):
    seed_everything(0)
    path = tmp_path / "t.pt"
    fit(tmp_path / "r1", [LotteryTicket(sparsity=0.875, rounds=3, path=str(path))])
    densities = [load_ticket(path)["density"]]
    for r in (2, 3):
        dst = DynamicSparseTraining("static", masks_from=str(path), summary=False)
        fit(tmp_path / f"r{r}", [dst, LotteryTicket(sparsity=0.875, rounds=3, path=str(path))])
        ticket = load_ticket(path)
        densities.append(ticket["density"])
        assert ticket["round"] == r
    assert densities == pytest.approx([0.5, 0.25, 0.125])
    final = load_ticket(path)["masks"]
    assert sum(int(m.sum()) for m in final.values()) == round(0.125 * sum(m.numel() for m in final.values()))
    assert ticket_density(0.125, 0.875, 3) == (3, pytest.approx(0.125))  # a fourth run stays at the target


def test_layer_scope_prunes_each_layer_to_the_same_share(tmp_path):
    seed_everything(0)
    fit(tmp_path, [LotteryTicket(sparsity=0.75, scope="layer")])
    masks = load_ticket(tmp_path / "ticket.pt")["masks"]
    for n in SPARSE:
        assert int(masks[n].sum()) == round(0.25 * masks[n].numel()), n


def test_rewind_weights_survive_a_crash_and_resume(tmp_path):
    seed_everything(0)
    fit(tmp_path / "full", [LotteryTicket(sparsity=0.8, rewind=2)], steps=16)
    seed_everything(0)  # a checkpoint at the end of the first epoch (8 steps), after the rewind point
    path = str(tmp_path / "resumed.pt")  # the same arguments (and so state key) in both halves
    fit(tmp_path / "first", [LotteryTicket(sparsity=0.8, rewind=2, path=path)], steps=8, save_every=8)
    ckpt = next((tmp_path / "first").glob("*step=8*.ckpt"))
    seed_everything(5)
    fit(tmp_path / "resumed", [LotteryTicket(sparsity=0.8, rewind=2, path=path)], steps=16, ckpt_path=str(ckpt))
    a, b = load_ticket(tmp_path / "full" / "ticket.pt"), load_ticket(path)
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    for n in SPARSE:
        assert torch.equal(a["masks"][n], b["masks"][n]), n


def test_kernel_granularity_refuses_element_tickets(tmp_path):
    seed_everything(0)
    fit(tmp_path, [LotteryTicket(sparsity=0.8)], TinyConvNet())
    dst = DynamicSparseTraining("static", granularity="kernel", masks_from=str(tmp_path / "ticket.pt"), summary=False)
    with pytest.raises(ValueError, match="whole units"):
        fit(tmp_path / "b", [dst], TinyConvNet())


def test_a_ticket_of_another_model_is_refused_before_training(tmp_path):
    seed_everything(0)
    fit(tmp_path, [LotteryTicket(sparsity=0.8)])
    dst = DynamicSparseTraining("static", masks_from=str(tmp_path / "ticket.pt"), summary=False)
    with pytest.raises(ValueError, match="exactly the sparsified parameters"):
        fit(tmp_path / "b", [dst], TinyConvNet())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sparsity": 1.0}, "`sparsity`"),
    ({"rewind": "start"}, "`rewind` must be one of"),
    ({"rewind": -1}, "`rewind`"),
    ({"scope": "local"}, "`scope`"),
    ({"rounds": 0}, "`rounds`"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LotteryTicket(**kwargs)


def test_masks_from_errors(tmp_path):
    with pytest.raises(ValueError, match="`masks_from`"):
        DynamicSparseTraining("granet", masks_from="t.pt")
    dst = DynamicSparseTraining("static", masks_from=str(tmp_path / "missing.pt"), summary=False)
    with pytest.raises(FileNotFoundError, match="`masks_from`"):
        fit(tmp_path, [dst])
    with pytest.raises(ValueError, match="`rewind` must be at most"):
        fit(tmp_path, [LotteryTicket(rewind=100)], steps=4)
