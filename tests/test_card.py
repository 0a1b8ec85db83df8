"""The model card: its one serialisation and its checks, every network's `.card`, `create_model(card=...)`, and the
card as our weight files (safetensors headers, model folders) carry it, also as files written before it existed."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

import inceptionnet
from inceptionnet import Preprocessing, create_model
from inceptionnet.card import MIN_INPUT_SIZE, CardError, ModelCard, pretrained_cfg
from inceptionnet.weights import WeightsError, save_model_folder, save_weights

NAMES = ("cat", "dog", "fox")


def full_card() -> ModelCard:
    """A card with every field away from its default."""
    return ModelCard(
        model_name="inception_resnet_v2_paper",
        num_classes=3,
        options={"num_classes": 3, "width": 0.0625, "scales": (0.1, 0.2, 0.3), "aux_logits": False},
        in_chans=1,
        class_names=NAMES,
        preprocessing=Preprocessing(input_size=91, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), crop_fraction=0.9),
        min_input_size=91,
        input_size_fixed=True,
        weights_name="run/model",
        label_mode="multi",
        thresholds=(0.5, 0.25, 0.75),
        metrics={"val_top1_error": 12.5, "epoch": 3},
    )


@pytest.fixture(scope="module")
def tiny() -> inceptionnet.InceptionNetwork:
    """A small Inception-v3 with named classes, multi-label thresholds and metrics."""
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.0625, num_classes=3).eval()
    model.class_names = NAMES
    model.label_mode = "multi"
    model.thresholds = (0.5, 0.25, 0.75)
    model.metrics = {"val_top1_error": 40.0}
    return model


# -- the card itself ----------------------------------------------------------------------------------------------


def test_round_trip_through_json_gives_the_same_card() -> None:
    card = full_card()
    d = card.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-ready: lists, not tuples
    back = ModelCard.from_dict(json.loads(card.to_json()))
    assert back == card and back.options["scales"] == (0.1, 0.2, 0.3)  # the residual scales back as a tuple
    assert ModelCard.from_dict({**d, "unrelated": 1}) == card  # inside a larger config.json
    minimal = ModelCard.from_dict({"model_name": "inception_v4", "num_classes": 9, "preprocessing": d["preprocessing"]})
    assert (minimal.in_chans, minimal.min_input_size, minimal.label_mode) == (3, MIN_INPUT_SIZE, "single")
    # ONNX metadata reads each value as JSON where it parses: a weights name "7" comes back a string
    assert ModelCard.from_dict({**d, "weights_name": 7}).weights_name == "7"


def test_inconsistent_cards_are_refused_with_the_fix() -> None:
    card = full_card()
    with pytest.raises(CardError, match="label_mode must be one of single, multi"):
        card.replace(label_mode="softmax")
    with pytest.raises(CardError, match="2 class names for a network with 3 outputs; give one name per output"):
        card.replace(class_names=("a", "b"))
    with pytest.raises(CardError, match="2 thresholds for a network with 3 outputs; give one threshold per output"):
        card.replace(thresholds=(0.1, 0.2))
    with pytest.raises(CardError, match="thresholds are for multi-label networks"):
        card.replace(label_mode="single")


def test_unreadable_cards_name_their_source() -> None:
    d = full_card().to_dict()
    with pytest.raises(CardError, match=r"^cfg\.json: not a readable model card \(KeyError: 'preprocessing'\)"):
        ModelCard.from_dict({k: v for k, v in d.items() if k != "preprocessing"}, source="cfg.json")
    with pytest.raises(CardError, match=r"^cfg\.json: the class names are not distinct"):
        ModelCard.from_dict({**d, "class_names": ["a", "a", "b"]}, source="cfg.json")
    with pytest.raises(CardError, match="class names must be a list of strings"):
        ModelCard.from_dict({**d, "class_names": "abc"})
    with pytest.raises(CardError, match=r"^cfg\.json: 4 class names for a network with 3 outputs"):
        ModelCard.from_dict({**d, "class_names": ["a", "b", "c", "d"]}, source="cfg.json")
    assert issubclass(CardError, ValueError)


# -- a network's card ----------------------------------------------------------------------------------------------


def test_every_network_describes_itself_and_timm_config_follows(tiny) -> None:
    card = tiny.card
    assert inceptionnet.ModelCard is ModelCard
    assert (card.model_name, card.num_classes, card.in_chans, card.class_names) == ("inception_v3", 3, 3, NAMES)
    assert card.options == tiny.build_options and card.preprocessing == tiny.preprocessing
    assert (card.label_mode, card.thresholds, card.metrics) == ("multi", (0.5, 0.25, 0.75), {"val_top1_error": 40.0})
    assert tiny.pretrained_cfg == pretrained_cfg(card)
    cfg = pretrained_cfg(full_card())
    assert cfg["input_size"] == (1, 91, 91) and cfg["min_input_size"] == (1, 91, 91) and cfg["fixed_input_size"]
    assert cfg["label_names"] == NAMES and cfg["num_classes"] == 3 and cfg["crop_pct"] == 0.9


def test_create_model_rebuilds_the_network_a_card_describes(tiny) -> None:
    back = create_model(card=tiny.card)  # random weights: no weights name, no metrics
    assert back.card == tiny.card.replace(weights_name=None, metrics=None)
    assert back.build_options == tiny.build_options
    described = full_card()
    other = create_model(card=described)  # every build option of the network, the card's among them
    assert other.build_options == {**described.options, "in_chans": 1, "drop_rate": 0.2}
    built = described.replace(options=other.build_options, min_input_size=MIN_INPUT_SIZE, input_size_fixed=False)
    assert other.card == built.replace(weights_name=None, metrics=None)
    wider = create_model(card=tiny.card, num_classes=5)  # an explicit option wins; the old classes do not fit
    assert wider.num_classes == 5 and wider.class_names is None and wider.thresholds is None
    assert wider.preprocessing == tiny.preprocessing and wider.label_mode == "multi"
    with pytest.raises(ValueError, match="the card describes inception_v3, not inception_v4"):
        create_model("inception_v4", card=tiny.card)


def test_apply_card_refuses_another_network_and_reset_classifier_drops_the_old_classes(tiny) -> None:
    model = create_model("inception_v3", width=0.0625, num_classes=3)
    model.apply_card(tiny.card.replace(weights_name="w.safetensors"))
    assert model.class_names == NAMES and model.thresholds == tiny.thresholds and model.weights_name == "w.safetensors"
    with pytest.raises(ValueError, match="the card describes a inception_v3 with 3 outputs"):
        create_model("inception_v3", width=0.0625, num_classes=4).apply_card(tiny.card)
    model.reset_classifier(4)
    assert (model.class_names, model.thresholds, model.metrics) == (None, None, None)
    assert model.card.num_classes == 4 and model.label_mode == "multi"


# -- the card in our files -------------------------------------------------------------------------------------------


def test_weights_files_and_model_folders_carry_the_card(tiny, tmp_path) -> None:
    path = save_weights(tiny, tmp_path / "tiny.safetensors")
    assert create_model(weights=path).card == tiny.card.replace(weights_name=str(path))
    folder = save_model_folder(tmp_path / "m", tiny, metrics={"val_top1_error": 30.0}, weights="raw")
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"] == "raw" and config["label_mode"] == "multi" and config["label_names"] == list(NAMES)
    card = ModelCard.from_dict(config)
    assert card.metrics == {"val_top1_error": 30.0} and card.options["aux_logits"] is False
    loaded = create_model(weights=folder)
    assert loaded.card == card.replace(weights_name=str(folder))
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), tiny(x))
    given = create_model(weights=folder, card=card.replace(class_names=("a", "b", "c")))  # the card given wins
    assert given.class_names == ("a", "b", "c") and given.weights_name == str(folder)
    fresh = create_model(weights=folder, num_classes=2)  # a fresh classifier: the old one's description goes
    assert (fresh.class_names, fresh.thresholds, fresh.metrics) == (None, None, None)


def test_files_written_before_the_card_still_load(tiny, tmp_path) -> None:
    """The safetensors header and config.json as the version before the card wrote them."""
    pre = json.dumps({"input_size": 299, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_fraction": 0.875,
                      "interpolation": "bicubic"})  # fmt: skip
    meta = {"format": "inceptionnet", "version": "0.9.0", "model": "inception_v3", "preprocessing": pre,
            "options": json.dumps({"width": 0.0625}), "class_names": json.dumps(list(NAMES))}  # fmt: skip
    path = tmp_path / "old.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, path, metadata=meta)
    old = create_model(weights=path)
    assert old.num_classes == 3 and old.class_names == NAMES and old.label_mode == "single"  # 3: the classifier's rows
    folder = save_model_folder(tmp_path / "m", tiny)
    config = json.loads((folder / "config.json").read_text())
    for key in ("in_chans", "min_input_size", "input_size_fixed", "weights_name", "label_mode", "thresholds"):
        del config[key]
    (folder / "config.json").write_text(json.dumps(config))
    assert create_model(weights=folder).class_names == NAMES
    (folder / "config.json").write_text(json.dumps({**config, "class_names": ["a", "a", "b"]}))
    with pytest.raises(WeightsError, match=r"m/config\.json: the class names are not distinct"):
        create_model(weights=folder)
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file({"stem.conv1a.conv.weight": torch.zeros(1)}, bad, metadata={**meta, "options": "{"})
    with pytest.raises(WeightsError, match=r"bad\.safetensors: unreadable inceptionnet metadata"):
        create_model(weights=bad)
