"""`inceptionnet export`: ONNX, TorchScript or torch.export, checked against eager PyTorch; or a folder for timm."""

from __future__ import annotations

import argparse
import sys

from inceptionnet.export.formats import FORMATS, ExportError, default_output, export_model
from inceptionnet.export.preprocessing import export_onnx_with_preprocessing
from inceptionnet.export.triton import BACKENDS, DEFAULT_MAX_BATCH, DEVICES, write_triton_repository
from inceptionnet.factory import load_model
from inceptionnet.models import InceptionNetwork, list_models
from inceptionnet.weights import CONFIG_FILE, WEIGHTS_FILE, save_timm_folder

TIMM_FORMAT = "timm"  # a folder in timm's hub layout (weights/timm_layout.py), not an inference file
TRITON_FORMAT = "triton"  # a Triton model repository (export/triton.py)
DEFAULT_REPOSITORY = "model_repository"
PIXELS = ", uint8 pixels in, probabilities out"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a network to ONNX, TorchScript or a torch.export program, checked against PyTorch; or for timm",
        description="Export the inference network (eval mode, logits only, BatchNorm folded into the convolutions), "
        "then run the exported file and compare its logits with eager PyTorch (max abs difference <= 1e-4 of the "
        "logits' scale). The "
        "file records the network, its class names and its preprocessing. --format timm instead writes a folder "
        "in timm's layout (model.safetensors with timm's key names + config.json) that timm.create_model loads, "
        "for inception_v3, inception_v4 and inception_resnet_v2. --with-preprocessing makes an ONNX file from uint8 "
        "pixels (N, H, W, 3) to probabilities; --format triton writes a Triton model repository around one "
        "(docs/export.md).",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"a network ({', '.join(list_models())}), NAME:WEIGHTS, a run folder, a model folder, a weights file "
        "or hf-hub:ORG/NAME (docs/weights.md)",
    )
    p.add_argument("--weights", help="published tag (e.g. tf_in1k), file or folder for a MODEL name; default: random")
    p.add_argument("--format", required=True, choices=(*FORMATS, TIMM_FORMAT, TRITON_FORMAT))
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (default: batch 1)")
    p.add_argument(
        "--output",
        help="output file (default: NETWORK.onnx / NETWORK.pt / NETWORK.pt2), or folder (timm: NETWORK-timm; "
        f"triton: {DEFAULT_REPOSITORY})",
    )
    p.add_argument("--input-size", type=int, help="square input size (default: the weights' preprocessing, 299)")
    p.add_argument(
        "--with-preprocessing",
        action="store_true",
        help="onnx: take uint8 RGB pixels (N, H, W, 3) at the input size and return probabilities (softmax, or "
        "sigmoid for a multi-label network): the scaling and normalisation of the card are in the graph",
    )
    p.add_argument(
        "--triton-backend",
        choices=BACKENDS,
        default="onnxruntime",
        help="triton: the backend that serves the ONNX file: onnxruntime (default), openvino (CPU), or python "
        "(CPU; for a Triton without the ONNX Runtime backend: 1/model.py runs the file on ONNX Runtime or OpenVINO, "
        "one of which Triton's Python environment needs, with numpy)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"triton: the largest batch dynamic batching forms (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument("--triton-device", choices=DEVICES, default="cpu", help="triton: the instances' device")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.format == TIMM_FORMAT:
        return run_timm(args)
    if args.format == TRITON_FORMAT:
        return run_triton(args)
    if args.with_preprocessing and args.format != "onnx":
        raise ValueError(f"--with-preprocessing makes an ONNX file; use --format onnx (not {args.format})")
    model = load_model(args.model, weights=args.weights)
    size, batch = args.input_size, args.dynamic_batch
    try:
        if args.with_preprocessing:
            output = args.output or default_output(model.model_name, "onnx")
            result = export_onnx_with_preprocessing(model, output, input_size=size, dynamic_batch=batch)
        else:
            result = export_model(model, format=args.format, output=args.output, input_size=size, dynamic_batch=batch)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    print(
        f"wrote {result.path} ({result.format}, {result.input_size}x{result.input_size}, {batch}, {_classes(model)}, "
        f"{result.folded_batchnorms} BatchNorms folded{PIXELS * args.with_preprocessing}); "
        f"max abs difference vs eager PyTorch: {result.max_abs_diff:.3g}"
    )
    return 0


def run_triton(args: argparse.Namespace) -> int:
    """Write the Triton model repository (export/triton.py) and print how to serve it."""
    model = load_model(args.model, weights=args.weights)
    folder = args.output or DEFAULT_REPOSITORY
    options = dict(backend=args.triton_backend, max_batch=args.max_batch, device=args.triton_device)
    try:
        repo = write_triton_repository(model, folder, input_size=args.input_size, **options)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = repo.export.input_size
    python = args.triton_backend == "python"
    print(
        f"wrote {repo.model_dir}/ (config.pbtxt, labels.txt, 1/model.onnx{', 1/model.py' * python}: uint8 (N, "
        f"{size}, {size}, 3) in, {model.num_classes} probabilities out, batches up to {args.max_batch}, "
        f"{args.triton_backend}); max abs difference vs PyTorch: {repo.export.max_abs_diff:.3g}. Serve it with\n"
        f"  tritonserver --model-repository {folder}"
        + ("\nwith numpy and onnxruntime (or openvino) installed in Triton's Python environment" if python else "")
    )
    return 0


def run_timm(args: argparse.Namespace) -> int:
    """Write the folder for timm and print how timm loads it; a network timm lacks is a ValueError (status 2)."""
    for given, option in ((args.dynamic_batch, "--dynamic-batch"), (args.input_size is not None, "--input-size")):
        if given:
            raise ValueError(
                f"{option} does not apply to --format timm: timm's network takes any batch and input size, and the "
                "folder records the network's own preprocessing (its input size included)"
            )
    model = load_model(args.model, weights=args.weights)
    folder = save_timm_folder(model, args.output or f"{model.model_name}-timm")
    size = model.preprocessing.input_size
    chans = f", in_chans={model.in_chans}" if model.in_chans != 3 else ""
    print(
        f"wrote {folder}/ in timm's layout ({WEIGHTS_FILE} with timm's key names + {CONFIG_FILE}; "
        f"{model.model_name}, {_classes(model)}, preprocessing {size}x{size}). Load it in timm with\n"
        f'  timm.create_model("local-dir:{folder}", pretrained=True)\n'
        "or, the weights alone,\n"
        f'  timm.create_model("{model.model_name}", num_classes={model.num_classes}{chans}, '
        f'checkpoint_path="{folder / WEIGHTS_FILE}")'
    )
    return 0


def _classes(model: InceptionNetwork) -> str:
    return f"{len(model.class_names)} named classes" if model.class_names else f"{model.num_classes} unnamed classes"
