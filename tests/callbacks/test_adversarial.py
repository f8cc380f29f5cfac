"""AdversarialTraining (PGD batches, modes, exact resume) and AdversarialRobustness (PGD accuracy, DDP).

Run as a script, this file is the 2-process DDP worker of the reduction test.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import run_worker  # noqa: E402

from lightning_sparse.attacks import pgd  # noqa: E402
from lightning_sparse.callbacks.adversarial import (  # noqa: E402
    AdversarialRobustness,
    AdversarialTraining,
    _batch_generator,
    batch_inputs,
    datamodule_stats,
)
from lightning_sparse.data.loading import EpochSampler, ResumableDataLoader  # noqa: E402
from lightning_sparse.tasks import ImageClassifier  # noqa: E402

MEAN, STD = 0.45, 0.22


RULE = torch.randn(64, 4, generator=torch.Generator().manual_seed(123))


def images(n=32, seed=0, normalised=False):
    """Pixel images (n, 1, 8, 8) in [0, 1] labelled by one linear rule (learnable in a few steps)."""
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    y = ((x.flatten(1) - 0.5) @ RULE).argmax(1)
    return ((x - MEAN) / STD if normalised else x), y


class Recording(ImageClassifier):
    """The tiny MLP classifier; records the inputs and mode ``training_step`` sees."""

    def __init__(self, num_classes=4, **kwargs):
        super().__init__("mlp", {"in_features": 64, "hidden_sizes": [16]}, num_classes=num_classes, lr=0.1,
                         scheduler="none", weight_decay=0.0, **kwargs)
        self.seen, self.modes = [], []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0].detach().clone())
        self.modes.append(self.training)
        return super().training_step(batch, batch_idx)


class Before(Callback):
    """Listed before AdversarialTraining: records the clean inputs of every training batch."""

    def __init__(self):
        self.clean = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.clean.append(batch[0].clone())


def trainer(callbacks, **kwargs):
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                   callbacks=callbacks, deterministic=True, num_sanity_val_steps=0, **kwargs)


def loader(x, y, resumable=False):
    data = TensorDataset(x, y)
    if resumable:
        return ResumableDataLoader(data, batch_size=8, sampler=EpochSampler(len(data), seed=0))
    return DataLoader(data, batch_size=8, shuffle=False)


@pytest.mark.parametrize("normalised", [False, True])
def test_training_step_sees_pgd_inputs_inside_the_eps_ball(normalised):
    x, y = images(normalised=normalised)
    stats = {"mean": MEAN, "std": STD} if normalised else {"mean": 0.0, "std": 1.0}
    cb = AdversarialTraining(eps=8 / 255, steps=3, mode="eval", **stats)
    seed_everything(0)
    model = Recording()
    before = Before()
    trainer([before, cb], max_steps=4).fit(model, train_dataloaders=loader(x, y))
    assert len(model.seen) == 4 and cb.batches_attacked == 4
    assert model.modes == [True] * 4  # mode="eval" attacked in eval mode, then restored train mode
    for i, (seen, clean) in enumerate(zip(model.seen, before.clean)):
        assert torch.equal(clean, x[8 * i: 8 * (i + 1)])
        to_pixels = (lambda t: t * STD + MEAN) if normalised else (lambda t: t)
        diff = (to_pixels(seen) - to_pixels(clean)).abs()
        assert diff.max() <= 8 / 255 + 1e-5
        assert diff.mean() > 2 / 255  # a real perturbation, not the clean batch
        assert to_pixels(seen).min() >= -1e-5 and to_pixels(seen).max() <= 1 + 1e-5


def test_the_batches_are_pgd_against_the_current_weights():
    x, y = images()
    cb = AdversarialTraining(eps=0.1, alpha=0.03, steps=4, mean=0.0, std=1.0, seed=3)
    seed_everything(0)
    model = Recording()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    trainer([cb], max_steps=1).fit(model, train_dataloaders=loader(x, y))
    model.load_state_dict(weights)
    model.train()
    expected = pgd(model, x[:8], y[:8], eps=0.1, alpha=0.03, steps=4, generator=_batch_generator(3, 0, 0))
    assert torch.equal(model.seen[0], expected)


def test_train_and_eval_modes_differ_on_batch_norm():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))
    batch = list(images(8))
    for mode, tracked in (("eval", 0), ("train", 5)):
        net.train()
        net[2].reset_running_stats()
        AdversarialTraining(steps=5, mode=mode, mean=0.0, std=1.0).on_train_batch_start(
            SimpleNamespace(global_rank=0), net, [batch[0].clone(), batch[1]], 0)
        assert net[2].num_batches_tracked == tracked, mode
        assert all(m.training for m in net.modules())


def test_dict_batches_are_attacked_in_place():
    x, y = images(8)
    batch = {"image": x.clone(), "label": y}
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    AdversarialTraining(mean=0.0, std=1.0).on_train_batch_start(SimpleNamespace(global_rank=0), net, batch, 0)
    assert 0 < (batch["image"] - x).abs().max() <= 8 / 255 + 1e-6


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:  # the checkpoint of the previous step is on disk
            raise RuntimeError("simulated crash")


def test_resume_mid_epoch_gives_the_batches_of_an_uninterrupted_run(tmp_path):
    x, y = images(32)

    def run(callbacks=(), ckpt_path=None):
        seed_everything(0)
        model = Recording()
        cb = AdversarialTraining(eps=0.1, alpha=0.02, steps=2, mean=0.0, std=1.0, seed=5)  # starts matter
        t = trainer([cb, *callbacks], max_steps=10, enable_checkpointing=bool(callbacks), default_root_dir=tmp_path)
        t.fit(model, train_dataloaders=loader(x, y, resumable=True), ckpt_path=ckpt_path)
        return model, cb

    full, full_cb = run()
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1, save_top_k=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([ckpt, Crash(at_step=6)])  # step 6 is mid-epoch (4 batches per epoch)
    resumed, resumed_cb = run(ckpt_path=str(tmp_path / "last.ckpt"))
    assert len(resumed.seen) == 4 and resumed_cb.batches_attacked == full_cb.batches_attacked == 10
    for a, b in zip(full.seen[6:], resumed.seen):
        assert torch.equal(a, b)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_mean_and_std_come_from_the_datamodule_or_default_to_pixels():
    from lightning_sparse.data.image.digits import DigitsDataModule
    from lightning_sparse.data.image.folder import ImageFolderDataModule

    dm = DigitsDataModule(image_size=8)
    dm.setup("fit")
    assert datamodule_stats(dm) == (dm.mean, dm.std) and dm.mean is not None
    folder = ImageFolderDataModule("/nonexistent", preset="cifar")
    assert datamodule_stats(folder)[0] == (0.4914, 0.4822, 0.4465)
    assert datamodule_stats(SimpleNamespace()) is None
    cb = AdversarialTraining()
    with pytest.warns(UserWarning, match="no `mean`/`std` given and none found"):
        cb.setup(SimpleNamespace(datamodule=None), None, "fit")
    assert cb.stats is None
    cb.setup(SimpleNamespace(datamodule=dm), None, "fit")
    assert cb.stats == (dm.mean, dm.std)


def test_digits_datamodule_end_to_end_in_pixel_space():
    from lightning_sparse.data.image.digits import DigitsDataModule

    dm = DigitsDataModule(image_size=8, batch_size=32)
    cb = AdversarialTraining(eps=8 / 255, steps=2)
    seed_everything(0)
    model, before = Recording(num_classes=10), Before()
    trainer([before, cb], max_steps=2, limit_val_batches=0).fit(model, datamodule=dm)
    assert cb.stats == (dm.mean, dm.std) and dm.std < 0.5
    for seen, clean in zip(model.seen, before.clean):
        z_units = (seen - clean).abs().max()
        assert 8 / 255 + 1e-3 < z_units <= (8 / 255) / dm.std + 1e-4  # eps in pixels, not in z-units


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (AdversarialTraining, {"eps": -1.0}, "`eps` must be a number >= 0, got -1.0"),
        (AdversarialTraining, {"steps": 1.5}, "`steps` must be an integer >= 0, got 1.5"),
        (AdversarialTraining, {"random_start": "yes"}, "`random_start` must be True or False, got 'yes'"),
        (AdversarialTraining, {"mode": "test"}, r"`mode` must be one of \('train', 'eval'\), got 'test'"),
        (AdversarialTraining, {"seed": -1}, "`seed` must be an integer >= 0, got -1"),
        (AdversarialTraining, {"mean": (0.5, 0.5)}, "`mean` and `std` must be given together"),
        (AdversarialRobustness, {"std": 0.0, "mean": 0.5}, "`std` must be positive in every channel"),
        (AdversarialRobustness, {"max_batches": 0}, "`max_batches` must be an integer >= 1 or None, got 0"),
    ],
)
def test_argument_errors_name_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_batch_layouts():
    x, y = images(4)
    assert batch_inputs((x, y, torch.arange(4)))[0] is x
    with pytest.raises(ValueError, match="`batch` must be a tuple/list"):
        batch_inputs({"x": x})
    with pytest.raises(ValueError, match="must be a floating-point tensor to attack, got torch.int64"):
        batch_inputs((y, y))


def fitted_classifier():
    x, y = images(64)
    seed_everything(0)
    model = Recording()
    trainer([], max_epochs=10).fit(model, train_dataloaders=loader(x, y))
    return model


def test_data(n=40):
    """The first ``n`` training images, which the fitted classifier mostly gets right."""
    x, y = images(64)
    return x[:n], y[:n]


def reference_accuracy(model, x, y, batch_size=8, max_batches=None, **attack):
    model.eval()
    correct = total = 0
    for i in range(0, len(y), batch_size):
        if max_batches is not None and i // batch_size >= max_batches:
            break
        xb, yb = x[i: i + batch_size], y[i: i + batch_size]
        x_adv = pgd(model, xb, yb, generator=_batch_generator(0, 0, i // batch_size), **attack)
        correct += int((model(x_adv).argmax(1) == yb).sum())
        total += len(yb)
    return correct / total


def test_robustness_logs_pgd_accuracy_below_clean_accuracy():
    model = fitted_classifier()
    x, y = test_data()
    cb = AdversarialRobustness(eps=0.05, alpha=0.01, steps=5, mean=0.0, std=1.0)
    (metrics,) = trainer([cb]).test(model, dataloaders=loader(x, y), verbose=False)
    assert metrics["test/clean_acc"] == pytest.approx(metrics["test/acc"])
    assert metrics["test/pgd_acc"] < metrics["test/clean_acc"] - 0.1
    assert cb.pgd_accuracy == pytest.approx(metrics["test/pgd_acc"])
    expected = reference_accuracy(model, x, y, eps=0.05, alpha=0.01, steps=5)
    assert metrics["test/pgd_acc"] == pytest.approx(expected)


def test_robustness_with_zero_eps_is_the_clean_accuracy_and_max_batches_limits():
    model = fitted_classifier()
    x, y = test_data()
    cb = AdversarialRobustness(eps=0.0, mean=0.0, std=1.0)
    (metrics,) = trainer([cb]).test(model, dataloaders=loader(x, y), verbose=False)
    assert metrics["test/pgd_acc"] == metrics["test/clean_acc"] == pytest.approx(metrics["test/acc"])
    cb = AdversarialRobustness(eps=0.05, alpha=0.01, steps=3, mean=0.0, std=1.0, max_batches=2)
    (metrics,) = trainer([cb]).test(model, dataloaders=loader(x, y), verbose=False)
    assert metrics["test/pgd_acc"] == pytest.approx(
        reference_accuracy(model, x, y, max_batches=2, eps=0.05, alpha=0.01, steps=3))


def test_robustness_sums_the_counts_of_two_ddp_ranks(tmp_path):
    model = fitted_classifier()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    run_worker(Path(__file__), tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0 == r1 and r0["total"] == 30  # 15 samples per rank, counted once
    x, y = test_data(30)  # the reference in one process: no random start, so rank seeds do not matter
    assert r0["pgd"] == pytest.approx(reference_accuracy(model, x, y, eps=0.05, alpha=0.01, steps=3,
                                                         random_start=False))
    assert r0["clean"] == pytest.approx(float((model(x).argmax(1) == y).float().mean()))


def _ddp_worker(out):
    out = Path(out)
    model = Recording()
    model.load_state_dict(torch.load(out / "weights.pt"))
    x, y = test_data(30)
    cb = AdversarialRobustness(eps=0.05, alpha=0.01, steps=3, random_start=False, mean=0.0, std=1.0)
    t = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, callbacks=[cb])
    t.test(model, dataloaders=DataLoader(TensorDataset(x, y), batch_size=4), verbose=False)
    torch.save({"pgd": cb.pgd_accuracy, "clean": cb.clean_accuracy, "total": cb.num_samples},
               out / f"rank{t.global_rank}.pt")


if __name__ == "__main__":
    _ddp_worker(sys.argv[1])
