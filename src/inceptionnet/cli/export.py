"""`inceptionnet export`: ONNX, TorchScript or torch.export, checked against eager PyTorch."""

from __future__ import annotations

import argparse
import sys

from inceptionnet.factory import load_model
from inceptionnet.inference.export import FORMATS, ExportError, export_model
from inceptionnet.models import list_models


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a network to ONNX, TorchScript or a torch.export program, checked against PyTorch",
        description="Export the inference network (eval mode, logits only, BatchNorm folded into the convolutions), "
        "then run the exported file and compare its logits with eager PyTorch (max abs difference <= 1e-4). The "
        "file records the network, its class names and its preprocessing (docs/export.md).",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"a network ({', '.join(list_models())}), NAME:WEIGHTS, a run folder, a model folder, a weights file "
        "or hf-hub:ORG/NAME (docs/weights.md)",
    )
    p.add_argument("--weights", help="published tag (e.g. tf_in1k), file or folder for a MODEL name; default: random")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (default: batch 1)")
    p.add_argument("--output", help="output file (default: NETWORK.onnx / NETWORK.pt / NETWORK.pt2)")
    p.add_argument("--input-size", type=int, help="square input size (default: the weights' preprocessing, 299)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model, weights=args.weights)
    try:
        result = export_model(
            model, format=args.format, output=args.output, input_size=args.input_size, dynamic_batch=args.dynamic_batch
        )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    classes = f"{len(model.class_names)} named classes" if model.class_names else f"{model.num_classes} unnamed classes"
    print(
        f"wrote {result.path} ({result.format}, {result.input_size}x{result.input_size}, {batch}, {classes}, "
        f"{result.folded_batchnorms} BatchNorms folded); max abs difference vs eager PyTorch: {result.max_abs_diff:.3g}"
    )
    return 0
