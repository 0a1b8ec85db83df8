"""ONNX with the preprocessing inside: uint8 pixels in, probabilities out (`export --with-preprocessing`).

A deployment (a Triton server, a phone, a browser) then sends the decoded, resized and cropped image
as it is, (N, H, W, 3) uint8 RGB at the card's input size, and gets class probabilities back: the
graph casts, scales by 1/255, normalises by the card's mean and std, turns NHWC into NCHW, runs the
network (BatchNorm folded) and ends in a softmax, or a sigmoid per class for a multi-label network
(`card.label_mode == "multi"`). A card with a temperature (`inceptionnet calibrate`) has the logits divided by
it before the softmax, in the graph; without one the graph is what it was before calibration existed.
Resizing and cropping stay outside: they depend on the source image.

The check feeds the file random pixels and compares its probabilities with the PyTorch network on the
same pixels normalised by torchvision (the data layer's way), within `DEFAULT_TOLERANCE`.
The file's metadata is the card (`export_metadata`) plus `input_format: "uint8_nhwc"` and
`output: "probabilities"`; our engines refuse to feed such a file normalised floats
(export/runtimes.py), since that would give wrong results without an error.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from inceptionnet.card import Preprocessing
from inceptionnet.export.folding import fold_batchnorm
from inceptionnet.export.formats import (
    DEFAULT_TOLERANCE,
    ExportError,
    ExportResult,
    InferenceNetwork,
    checked_input_size,
    export_metadata,
    export_onnx,
    run_onnx,
)
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.outputs import scaled_logits

INPUT_FORMAT = "uint8_nhwc"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"


class PixelsToProbabilities(nn.Module):
    """uint8 (N, H, W, 3) RGB pixels -> (N, classes) probabilities: the preprocessing, `network`, the activation."""

    def __init__(
        self, network: nn.Module, pre: Preprocessing, *, multi_label: bool, temperature: float | None = None
    ) -> None:
        super().__init__()
        self.network = network
        std = torch.tensor(pre.std).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add per pixel
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -torch.tensor(pre.mean).view(1, 3, 1, 1) / std)
        self.multi_label = multi_label
        self.temperature = temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels.permute(0, 3, 1, 2).float() * self.scale + self.shift
        logits = self.network(images)
        if self.multi_label:
            return logits.sigmoid()
        return scaled_logits(logits, self.temperature).softmax(dim=1)


def export_onnx_with_preprocessing(
    model: InceptionNetwork,
    output: str | Path,
    *,
    input_size: int | None = None,
    dynamic_batch: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Write `model` as an ONNX file from uint8 NHWC pixels to probabilities, checked against PyTorch.

    Raises ExportError when the file's probabilities differ from the Python path by more than `tolerance`.
    """
    if model.in_chans != 3:
        raise ValueError(
            f"{model.model_name} takes {model.in_chans} channels; --with-preprocessing takes RGB images (3 channels)"
        )
    size = checked_input_size(model, input_size)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = model.card
    metadata = {**export_metadata(model, input_size=size), "input_format": INPUT_FORMAT, "output": OUTPUT_NAME}
    multi = card.label_mode == "multi"
    eager = InferenceNetwork(model).eval()
    folded, count = fold_batchnorm(eager)
    temperature = card.temperature
    deployed = PixelsToProbabilities(folded, card.preprocessing, multi_label=multi, temperature=temperature).eval()
    gen = torch.Generator().manual_seed(0)
    trace_batch, check_batch = (2, 3) if dynamic_batch else (1, 1)
    example = torch.randint(0, 256, (trace_batch, size, size, 3), dtype=torch.uint8, generator=gen)
    check = torch.randint(0, 256, (check_batch, size, size, 3), dtype=torch.uint8, generator=gen)
    with torch.no_grad():
        export_onnx(deployed, example, path, dynamic_batch, metadata, names=(INPUT_NAME, OUTPUT_NAME))
        got = run_onnx(path, check)
        expected = python_probabilities(eager, check, card.preprocessing, multi_label=multi, temperature=temperature)
    diff = (got.float() - expected).abs().max().item()
    if not diff <= tolerance:  # probabilities: their scale is 1
        raise ExportError(
            f"the ONNX file {path} with preprocessing does not reproduce the network: max abs difference of the "
            f"probabilities {diff:.3g} > {tolerance:g}"
        )
    return ExportResult(path, "onnx", size, dynamic_batch, count, diff)


def python_probabilities(
    network: nn.Module,
    pixels: torch.Tensor,
    pre: Preprocessing,
    *,
    multi_label: bool,
    temperature: float | None = None,
) -> torch.Tensor:
    """The Python path on uint8 NHWC `pixels`: scaled to [0, 1], normalised by `pre`, the network, the activation
    (a softmax of the logits divided by `temperature`, where given)."""
    images = TF.normalize(TF.to_dtype(pixels.permute(0, 3, 1, 2), torch.float32, scale=True), pre.mean, pre.std)
    logits = network(images).float()
    return logits.sigmoid() if multi_label else scaled_logits(logits, temperature).softmax(dim=1)
