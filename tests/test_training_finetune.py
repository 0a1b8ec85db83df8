"""Fine-tuning a tiny network from a weights file: the new classifier, the loaded body, frozen stages and their
BatchNorm statistics, the learning-rate multiplier, errors, resume, a network passed in, presets and inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.training import distributed
from inceptionnet.training.finetune import STAGES, freeze, stages
from inceptionnet.training.inputs import set_up_inputs, training_classes
from inceptionnet.training.learner import build_learner, build_network
from inceptionnet.training.loop import train
from inceptionnet.training.presets import PRESETS, preset, resolve_config
from inceptionnet.weights import IMAGENET_MEAN, IMAGENET_STD, WeightsError, read_state_dict, save_weights
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

FROZEN = ("stem.", "blocks_a.")  # --freeze 2
SOURCE = ("airplane", "automobile", "bird", "cat", "deer")  # the transfer experiment's two halves of CIFAR-10
TARGET = ("dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def source(tmp_path_factory, make_image_folder, randomize_bn):
    """A weights file of a tiny Inception-v3 with 4 classes and an auxiliary head (non-trivial BN statistics),
    and a 2-class image folder to fine-tune it on."""
    tmp = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(3)
    net = randomize_bn(create_model("inception_v3", num_classes=4, width=0.125, aux_logits=True))
    path = save_weights(net, tmp / "source.safetensors")
    data = make_image_folder(tmp / "data", train=5, val=2)  # 10 images: 3 steps of 3 per epoch
    return path, data


@pytest.fixture
def ctx():
    context = distributed.setup("cpu")
    yield context
    distributed.cleanup(context)


def _finetune_config(make_train_config, source, out, **changes):
    path, data = source
    return make_train_config(data, out, weights=str(path), width=None, **changes)


def test_new_classifier_on_the_loaded_body(source, make_train_config, tmp_path, ctx) -> None:
    cfg = _finetune_config(make_train_config, source, tmp_path / "run")
    learner = build_learner(cfg, ctx, num_classes=2)
    model, file = learner.model, read_state_dict(source[0])[0]
    assert model.build_options["width"] == 0.125  # taken from the weights, not given
    assert model.head.fc.out_features == 2 and model.aux.fc.out_features == 2
    new = {"head.fc.weight", "head.fc.bias", "aux.fc.weight", "aux.fc.bias"}
    for key, value in model.state_dict().items():
        if key not in new:
            assert torch.equal(value, file[key]), key  # every other tensor is the file's, BN statistics included
    assert learner.use_aux
    assert learner.notes[0] == (
        f"fine-tuning inception_v3 from {source[0]}: new classifier and auxiliary classifier for 2 classes "
        "(the weights had 4)"
    )


def test_frozen_stages_and_their_batchnorm_statistics_do_not_change(source, make_train_config, tmp_path) -> None:
    file = read_state_dict(source[0])[0]
    result = train(_finetune_config(make_train_config, source, tmp_path / "run", freeze=2))
    trained = result.model.state_dict()
    averaged = result.averaged.module.state_dict()
    for key, value in trained.items():
        if key.startswith(FROZEN):  # weights, running means and variances, batch counters
            assert torch.equal(value, file[key]) and torch.equal(averaged[key], file[key]), key
    assert not torch.equal(trained["blocks_b.0.branch0.conv.weight"], file["blocks_b.0.branch0.conv.weight"])
    assert not torch.equal(trained["blocks_b.0.branch0.bn.running_mean"], file["blocks_b.0.branch0.bn.running_mean"])
    # model.train() leaves the frozen stages in eval mode; the others train.
    result.model.train()
    assert not result.model.stem.training and not any(m.training for m in result.model.blocks_a.modules())
    assert result.model.reduction_a.training and result.model.head.training
    assert not any(p.requires_grad for p in result.model.stem.parameters())
    # Across processes, only the training stages' statistics are averaged.
    averaged_ids = {id(b) for b in distributed.changing_buffers(result.model)}
    assert averaged_ids and not any(id(b) in averaged_ids for b in result.model.stem.buffers())
    assert all(id(b) in averaged_ids for b in result.model.reduction_a.buffers() if b.is_floating_point())


def test_learning_rate_multiplier_of_the_pretrained_layers(source, make_train_config, tmp_path, ctx) -> None:
    cfg = _finetune_config(make_train_config, source, tmp_path / "run", freeze=1, pretrained_lr_scale=0.1)
    learner = build_learner(cfg, ctx, num_classes=2)
    names = {id(p): n for n, p in learner.model.named_parameters()}
    groups = learner.optimizer.param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, 0.1, 0.1]
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    heads = {names[id(p)] for g in groups[:2] for p in g["params"]}
    body = {names[id(p)] for g in groups[2:] for p in g["params"]}
    assert heads == {n for n in names.values() if n.startswith(("head.", "aux."))}
    assert body == {n for n in names.values() if not n.startswith(("head.", "aux.", "stem."))}  # stem: frozen
    assert learner.notes[1:] == (
        f"frozen: stem ({sum(p.numel() for p in learner.model.stem.parameters()):,} parameters, BatchNorm "
        "statistics kept)",
        "learning rate of the pretrained layers: x0.1 (the classifiers: x1)",
    )
    # In training, every step sets each group's rate: the schedule's, times the group's multiplier.
    result = train(cfg)
    saved = read_checkpoint(result.out_dir)["optimizer"]["param_groups"]
    last_lr = [r for r in read_metrics(result.out_dir / "metrics.jsonl") if r["kind"] == "epoch"][-1]["lr"]
    assert [g["lr"] for g in saved] == pytest.approx([last_lr, last_lr, 0.1 * last_lr, 0.1 * last_lr])


def test_weights_that_do_not_fit_are_a_clear_error(source, make_train_config, tmp_path, ctx) -> None:
    other = save_weights(create_model("inception_v4", width=0.125, num_classes=3), tmp_path / "v4.safetensors")
    cfg = _finetune_config(make_train_config, source, tmp_path / "run")
    with pytest.raises(WeightsError, match=r"cannot fine-tune inception_v3 from .*v4.*inception_v4"):
        build_network(dataclasses.replace(cfg, weights=str(other)), num_classes=2)
    with pytest.raises(
        ValueError, match=r"(?s)cannot fine-tune inception_v3 .*shape mismatch.*--width 0.25 was given: leave it unset"
    ):
        build_network(dataclasses.replace(cfg, width=0.25), num_classes=2)
    with pytest.raises(ValueError, match=r"inception_v3 has 6 stages \(stem, .*blocks_c\); choose 0-6"):
        build_network(dataclasses.replace(cfg, freeze=7), num_classes=2)
    scratch = dataclasses.replace(cfg, weights=None, width=0.125)
    for changes in ({"freeze": 1}, {"pretrained_lr_scale": 0.5}):
        with pytest.raises(ValueError, match="apply to pretrained layers: give --weights"):
            build_network(dataclasses.replace(scratch, **changes), num_classes=2)


def test_resume_of_a_finetuning_run_equals_the_uninterrupted_run(
    source, make_train_config, tmp_path, after_step
) -> None:
    cfg = _finetune_config(make_train_config, source, tmp_path / "straight", freeze=1, pretrained_lr_scale=0.5)
    straight = train(cfg)
    cfg = dataclasses.replace(cfg, out_dir=str(tmp_path / "run"))
    with after_step(1):
        assert train(cfg).stopped_by == "SIGTERM"
    resumed = train(cfg, resume=tmp_path / "run")
    assert (resumed.step, resumed.epoch) == (straight.step, straight.epoch) == (6, 2)
    for a, b in ((resumed.model, straight.model), (resumed.averaged, straight.averaged)):
        for (key, value), other in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(value, other), key
    assert resumed.val_top1_error == straight.val_top1_error


def test_train_a_network_passed_in(source, make_train_config, tmp_path, capsys) -> None:
    path, data = source
    net = create_model("inception_v3", weights=path, aux_logits=True)
    net.preprocessing = dataclasses.replace(net.preprocessing, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    cfg = make_train_config(data, tmp_path / "run", width=None, epochs=1)
    result = train(cfg, model=net)
    assert result.model is net and net.head.fc.out_features == 2 and net.aux.fc.out_features == 2
    assert read_checkpoint(result.out_dir)["model_options"]["width"] == 0.125
    # The checkpoint records the transform the run used: as weights, it prepares images the same way.
    expected = dataclasses.replace(net.preprocessing, input_size=cfg.input_size)
    for weights in (result.out_dir / "last.pt", result.out_dir / "best.pt", result.out_dir / "model"):
        assert create_model(weights=weights).preprocessing == expected, weights
    out = capsys.readouterr().out
    assert (
        "training the inception_v3 passed in: new classifier and auxiliary classifier for 2 classes (it had 4)" in out
    )
    # A network whose classifier fits the classes keeps it.
    head = net.head.fc.weight.detach().clone()
    model, _, notes = build_network(cfg, num_classes=2, model=net)
    assert torch.equal(model.head.fc.weight, head) and notes == ()


def test_a_network_passed_in_must_match_the_config(source, make_train_config, tmp_path) -> None:
    path, data = source
    cfg = make_train_config(data, tmp_path / "run")
    v3 = create_model("inception_v3", width=0.125, aux_logits=True)
    with pytest.raises(ValueError, match="config trains inception_v4; set model='inception_v3'"):
        build_network(dataclasses.replace(cfg, model="inception_v4"), num_classes=2, model=v3)
    with pytest.raises(ValueError, match="either in the config"):
        build_network(dataclasses.replace(cfg, weights=str(path)), num_classes=2, model=v3)
    with pytest.raises(ValueError, match="auxiliary head but aux_weight is 0"):
        build_network(dataclasses.replace(cfg, aux_weight=0.0), num_classes=2, model=v3)
    with pytest.raises(ValueError, match="takes a network of this package"):
        build_network(cfg, num_classes=2, model=torch.nn.Linear(2, 2))


def test_freeze_counts_the_stages_in_forward_order() -> None:
    irv2 = create_model("inception_resnet_v2", width=0.0625)
    assert stages(irv2) == list(STAGES)  # the released Inception-ResNet-v2 ends its body with conv_7b
    v4 = create_model("inception_v4", width=0.0625)
    assert stages(v4) == list(STAGES[:6])
    assert freeze(v4, 3) == ["stem", "blocks_a", "reduction_a"]
    trainable = {n.split(".")[0] for n, p in v4.named_parameters() if p.requires_grad}
    assert trainable == {"blocks_b", "reduction_b", "blocks_c", "head"}
    assert freeze(create_model("inception_v4", width=0.0625), 0) == []


def test_weights_choose_the_finetune_preset(tmp_path) -> None:
    assert resolve_config(preset_name=None, overrides={"weights": "w.safetensors", "data": "/d"}) == preset(
        "finetune", weights="w.safetensors", data="/d"
    )
    assert resolve_config(preset_name="paper", overrides={"weights": "tf_in1k"}).optimizer == "rmsprop_tf"
    fine = PRESETS["finetune"]
    assert (fine.weights, fine.optimizer, fine.lr, fine.lr_schedule, fine.epochs) == (
        "tf_in1k",
        "sgd",
        0.01,
        "cosine",
        15,
    )
    assert fine.width is None and fine.input_size is None  # the weights' network and input size


def test_inputs_are_prepared_as_the_network_expects(source, make_train_config, tmp_path, ctx) -> None:
    _, data = source
    cfg = make_train_config(data, tmp_path / "run", input_size=None)
    assert training_classes(cfg) == ["airplane", "automobile"]
    with pytest.raises(ValueError, match="does not exist"):
        training_classes(dataclasses.replace(cfg, data=str(tmp_path / "missing")))
    net = create_model("inception_v3", width=0.125, num_classes=2)
    net.preprocessing = dataclasses.replace(net.preprocessing, input_size=80, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    ours = set_up_inputs(cfg, ctx, network=net)
    default = set_up_inputs(dataclasses.replace(cfg, input_size=80), ctx)
    assert ours.input_size == 80  # the network's, as --input-size is not given
    assert ours.preprocessing == net.preprocessing
    a, b = next(iter(ours.val_batches)).images, next(iter(default.val_batches)).images
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(a * std + mean, b * 0.5 + 0.5)  # the same pixels, normalised as the network expects
    net.reset_classifier(3)
    with pytest.raises(ValueError, match=r"2 classes in .* but the network has 3 outputs"):
        set_up_inputs(cfg, ctx, network=net)


@pytest.mark.slow
def test_finetuning_beats_training_from_scratch(cifar10, tmp_path) -> None:
    """The transfer experiment of docs/finetuning.md (about 4 minutes on 2 CPU cores): the demo network trained
    on five CIFAR-10 classes, then on 300 images of each of the other five, from its weights or from scratch."""
    folders = {}
    for name, classes in (("source", SOURCE), ("target", TARGET)):
        for split in ("train", "test"):
            (tmp_path / name / split).mkdir(parents=True)
            for c in classes:
                (tmp_path / name / split / c).symlink_to(cifar10 / split / c, target_is_directory=True)
        folders[name] = str(tmp_path / name)
    recipe = preset("demo", epochs=8, train_per_class=300, val_per_class=100, progress=False)
    source = train(
        dataclasses.replace(recipe, data=folders["source"], train_per_class=2000, out_dir=str(tmp_path / "s"))
    )
    weights = save_weights(source.averaged.module, tmp_path / "source.safetensors")
    target = dataclasses.replace(recipe, data=folders["target"])
    scratch = train(dataclasses.replace(target, out_dir=str(tmp_path / "scratch")))
    tuned = train(dataclasses.replace(target, weights=str(weights), out_dir=str(tmp_path / "tuned")))
    first = [epochs[0]["val_top1_error"] for epochs in map(_epochs, (scratch, tuned))]
    assert first[1] < first[0] - 15  # documented: 37.4% against 64.8% after one epoch
    assert tuned.val_top1_error < scratch.val_top1_error - 5  # documented: 25.8% against 37.2% after eight


def _epochs(result) -> list[dict]:
    return [r for r in read_metrics(result.out_dir / "metrics.jsonl") if r["kind"] == "epoch"]
