"""Class imbalance (balanced loss weights, the class-balanced sampler, balanced accuracy), gradient accumulation
and AdamW."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_class_weight

from inceptionnet.cli import main
from inceptionnet.data import BalancedSampler, Batch
from inceptionnet.evaluation.report import matrix_balanced_accuracy
from inceptionnet.evaluation.scores import Tally
from inceptionnet.training.balance import balanced_weights, loss_weights, positive_weights
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.learner import build_learner
from inceptionnet.training.losses import training_loss
from inceptionnet.training.step import StepRecipe, train_step
from inceptionnet.weights.runfolder import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_balanced_weights_are_the_formula_and_sklearns() -> None:
    targets = [0, 0, 0, 1, 2, 2]
    weights = balanced_weights(targets, ["a", "b", "c"])
    assert torch.allclose(weights, torch.tensor([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)]))
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(targets))
    assert np.allclose(weights.numpy(), expected)
    assert loss_weights(targets, ["a", "b", "c"], mode="none", multi_label=False) is None


def test_a_class_without_images_is_named() -> None:
    with pytest.raises(ValueError, match="no training image of class 'b'"):
        balanced_weights([0, 0, 2], ["a", "b", "c"])


def test_multi_label_weights_are_negatives_over_positives() -> None:
    targets = [(0,), (0, 1), (0,), (2,)]
    assert torch.allclose(positive_weights(targets, ["a", "b", "c"]), torch.tensor([1 / 3, 3.0, 3.0]))
    assert torch.equal(
        loss_weights(targets, ["a", "b", "c"], mode="balanced", multi_label=True), positive_weights(targets, "abc")
    )


def test_the_training_loss_weighs_classes_or_positives_as_the_label_mode_says() -> None:
    torch.manual_seed(0)
    logits, weights = torch.randn(6, 3), torch.tensor([0.5, 2.0, 4.0])
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    single = training_loss(logits, labels, class_weights=weights)
    # a weighted mean: sum of w[y] * -log p[y] over sum of w[y]
    picked = -logits.log_softmax(1).gather(1, labels[:, None]).squeeze(1)
    assert torch.allclose(single, (weights[labels] * picked).sum() / weights[labels].sum())
    hot = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    multi = training_loss(logits, hot, multi_label=True, class_weights=weights)
    # the positive term of class c weighed by w[c], the negative term by 1
    p = logits.sigmoid()
    expected = -(weights * hot * p.log() + (1 - hot) * (1 - p).log()).mean()
    assert torch.allclose(multi, expected, atol=1e-6)
    assert not torch.allclose(multi, training_loss(logits, hot, multi_label=True))


TEN_TO_ONE = [0] * 1000 + [1] * 100


def _draws(epoch: int, *, seed: int = 0, start: int = 0, rank: int = 0, world_size: int = 1) -> list[int]:
    sampler = BalancedSampler(TEN_TO_ONE, num_replicas=world_size, rank=rank, seed=seed)
    sampler.set_epoch(epoch, start=start)
    drawn = list(sampler)
    assert len(drawn) == len(sampler)
    return drawn


def test_the_balanced_sampler_draws_each_class_about_as_often() -> None:
    drawn = _draws(0)
    assert len(drawn) == len(TEN_TO_ONE)  # an epoch is the split's size
    rare = sum(TEN_TO_ONE[i] for i in drawn)
    assert rare == 536  # seeded: this exact count
    assert abs(rare - 550) < 0.1 * 1100  # near-uniform, on a 10:1 split
    assert _draws(0) == drawn  # the same for the same seed
    assert _draws(1) != drawn and _draws(0, seed=1) != drawn  # another epoch, another seed: other draws


def test_the_balanced_sampler_resumes_mid_epoch_and_shards_without_overlap() -> None:
    drawn = _draws(3)
    assert _draws(3, start=417) == drawn[417:]
    ranks = [_draws(3, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 550
    assert [i for pair in zip(*ranks, strict=True) for i in pair] == drawn  # each draw on one rank only
    assert _draws(3, rank=1, world_size=2, start=100) == ranks[1][100:]


def test_multi_label_images_weigh_the_mean_of_their_classes_inverse_frequencies() -> None:
    sampler = BalancedSampler([(0,), (0,), (0, 1), (1,)], num_replicas=1, rank=0, seed=0)
    assert torch.allclose(
        sampler.weights, torch.tensor([1 / 3, 1 / 3, (1 / 3 + 1 / 2) / 2, 1 / 2], dtype=torch.float64)
    )


def test_balanced_accuracy_equals_sklearns() -> None:
    gen = torch.Generator().manual_seed(0)
    targets = torch.tensor([0] * 30 + [1] * 6 + [2] * 4)
    probs = torch.rand(len(targets), 4, generator=gen).softmax(1)  # 4 outputs: class 3 has no image
    probs[:20, 0] += 1  # most of the large class right
    probs[35, 3] += 1  # one image predicted as the class without images
    tally = Tally(4)
    tally.add(probs, targets, targets)
    score = tally.score("m", 1, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="not in y_true"):  # sklearn leaves that class out, as we do
        expected = balanced_accuracy_score(targets.numpy(), probs.argmax(1).numpy())
    assert math.isclose(score.balanced_accuracy, 100 * expected, rel_tol=1e-9)
    row = score.to_dict()
    assert row["balanced_accuracy"] == round(100 * expected, 4)
    assert row["per_class_recall"]["d"] is None and row["per_class_recall"]["a"] == round(
        score.per_class[0].top1_accuracy, 4
    )
    predicted = probs.argmax(1).numpy()
    matrix = np.zeros((4, 4), dtype=int)
    np.add.at(matrix, (targets.numpy(), predicted), 1)
    assert math.isclose(matrix_balanced_accuracy(matrix), expected, rel_tol=1e-12)


def _gradients(cfg: TrainConfig, batches: list[Batch]) -> dict[str, torch.Tensor]:
    """The gradients of one train_step on `batches`, BatchNorms in inference mode and no dropout."""
    ctx = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    learner = build_learner(cfg, ctx, num_classes=3)
    learner.model.eval()  # frozen BN statistics, no dropout: the micro-batches see what one batch sees
    train_step(learner, batches, StepRecipe(cfg, ctx), step=0, probed=False, stop_requested=0.0)
    return {n: p.grad.clone() for n, p in learner.model.named_parameters() if p.grad is not None}


def test_accumulating_four_micro_batches_gives_the_gradient_of_one_batch_four_times_larger() -> None:
    cfg = TrainConfig(model="inception_resnet_v1", width=0.125, drop_rate=0.0, aux_weight=0.0, ema_decay=0.0)
    cfg = replace(cfg, clip_grad_norm=0.0, input_size=75)
    gen = torch.Generator().manual_seed(1)
    images, targets = torch.randn(8, 3, 75, 75, generator=gen), torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])
    whole = _gradients(cfg, [Batch(images, targets, 0)])
    micro = _gradients(cfg, [Batch(images[i : i + 2], targets[i : i + 2], 0) for i in range(0, 8, 2)])
    assert whole.keys() == micro.keys() and whole
    for name, grad in whole.items():
        assert torch.allclose(micro[name], grad, rtol=1e-4, atol=1e-6), name


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    """2 epochs of 10 images in 5 batches of 2: 2 steps of 2 accumulated batches each, AdamW, balanced."""
    args = ["train", "--data", str(data), "--out-dir", str(out), "--model", "inception_v3", "--width", "0.125"]
    args += ["--input-size", "75", "--epochs", "2", "--batch-size", "2", "--accumulate", "2", "--num-workers", "0"]
    args += ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--sampler", "balanced"]
    return [*args, "--class-weights", "balanced", "--no-progress", "--ema-decay", "0.9", *extra]


def test_an_accumulating_adamw_run_trains_and_resumes_exactly(tmp_path, make_image_folder) -> None:
    data = make_image_folder(tmp_path / "data", train=5, val=2)
    assert main(_command(data, tmp_path / "whole")) == 0
    assert main(_command(data, tmp_path / "parts", "--max-steps", "1")) == 0
    assert read_checkpoint(tmp_path / "parts" / "last.pt")["position"]["batches"] == 2  # a step's boundary
    assert main(_command(data, tmp_path / "parts")) == 0
    whole, parts = read_checkpoint(tmp_path / "whole" / "last.pt"), read_checkpoint(tmp_path / "parts" / "last.pt")
    assert whole["position"] == parts["position"] and whole["position"]["step"] == 4
    for key in ("model", "ema"):
        for name, value in whole[key].items():
            assert torch.equal(value, parts[key][name]), f"{key}.{name}"
    assert whole["optimizer"]["state"] and "exp_avg_sq" in next(iter(whole["optimizer"]["state"].values()))
