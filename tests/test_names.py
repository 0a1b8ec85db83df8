"""Class names from users' data are written safely everywhere (inceptionnet/names.py, the rule written once):
no control characters in a card, Markdown escaped in the model card's body, the front matter parsed back by
a YAML reader as it was written, `$` shown as itself in the report's pictures, CSV cells that are not formulas,
one overlay per image when two images share a file name."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from inceptionnet import Preprocessing, create_model
from inceptionnet.card import CardError
from inceptionnet.cli import main
from inceptionnet.data import DEMO_DATA
from inceptionnet.inference.explain import explain, write_overlays
from inceptionnet.names import csv_cell, markdown, plot_text, unprintable
from inceptionnet.weights import save_model_folder, save_weights

pytestmark = pytest.mark.usefixtures("one_thread")
HOSTILE = ("$x$ =", "=1+1", "**bold** <b>")  # mathtext, a spreadsheet formula, Markdown and HTML


def test_the_rule() -> None:
    assert unprintable(["cat", "a\nb", "", "tab\there", "ünïcode ok"]) == ["'a\\nb'", "''", "'tab\\there'"]
    assert markdown("**b** <i>[x](y)</i> #1") == r"\*\*b\*\* \<i\>\[x\]\(y\)\</i\> \#1"
    assert plot_text("$x$ costs $5") == r"\$x\$ costs \$5"
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@A1", "cat", 3)] == ["'=1+1", "'+1", "'-1", "'@A1", "cat", 3]


def test_a_class_name_with_a_newline_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = create_model("inception_v3", width=0.125, num_classes=2)
    model.class_names = ("a\nb", "c")
    with pytest.raises(CardError, match=r"control characters; 'a\\nb' are not"):
        _ = model.card  # what every file written from a network (Triton's labels, the model card) is made from
    for name in ("a\nb", "c"):  # a folder on a file system that allows the name: refused where it is read
        (tmp_path / name).mkdir()
        shutil.copy(next((DEMO_DATA / "val").iterdir()).iterdir().__next__(), tmp_path / name / "x.jpg")
    assert main(["eval", "--data", str(tmp_path), "--model", "inception_v3", "--width", "0.125"]) == 2
    err = capsys.readouterr().err
    assert "classes whose names hold control characters" in err and "rename those classes" in err


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny network whose classes have hostile names, and a validation folder of those classes."""
    tmp = tmp_path_factory.mktemp("names")
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.125, num_classes=3)
    model.preprocessing = Preprocessing(input_size=75)
    model.class_names = HOSTILE
    sources = sorted(p for p in (DEMO_DATA / "val").iterdir())[:3]
    for name, source in zip(HOSTILE, sources, strict=True):
        (tmp / "val" / name).mkdir(parents=True)
        for image in sorted(source.iterdir())[:2]:
            shutil.copy(image, tmp / "val" / name / image.name)
    return save_weights(model, tmp / "hostile.safetensors"), tmp / "val"


def test_the_report_writes_hostile_names_as_text(hostile_run: tuple[Path, Path], tmp_path: Path) -> None:
    weights, val = hostile_run
    out = tmp_path / "report"
    assert main(["eval", "--data", str(val), "--model", str(weights), "--engine", "torch", "--report", str(out)]) == 0
    with (out / "per_class.csv").open(newline="") as f:
        cells = [row["class"] for row in csv.DictReader(f)]
    assert sorted(cells) == sorted(["$x$ =", "'=1+1", "**bold** <b>"])  # the formula is text
    with (out / "confusion_matrix.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert "'=1+1" in header and "=1+1" not in header
    assert (out / "confusion_matrix.png").stat().st_size > 0  # the `$` pair did not start mathtext


def test_the_model_card_escapes_markdown_and_its_yaml_reads_back(tmp_path: Path) -> None:
    model = create_model("inception_v3", width=0.125, num_classes=3)
    model.class_names = HOSTILE
    folder = save_model_folder(tmp_path / "m", model, class_names=HOSTILE, preprocessing=Preprocessing())
    text = (folder / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["class_names"] == list(HOSTILE)
    body = text.split("---\n", 2)[2]
    assert r"\*\*bold\*\* \<b\>" in body and "<b>" not in body


def test_two_images_of_one_file_name_get_two_overlays(tiny_classifier: Path, tmp_path: Path) -> None:
    image = next((DEMO_DATA / "val").iterdir()).iterdir().__next__()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(image, tmp_path / folder / "same.jpg")
    model = create_model(weights=str(tiny_classifier))
    explanations = explain(model, [tmp_path / "a" / "same.jpg", tmp_path / "b" / "same.jpg"], top_k=1)
    written = write_overlays(explanations, tmp_path / "out")
    assert len(set(written)) == 2 and all(p.is_file() for p in written)
