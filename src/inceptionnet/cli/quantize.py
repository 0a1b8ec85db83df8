"""`inceptionnet quantize`: int8 post-training static quantization, checked against the fp32 network."""

from __future__ import annotations

import argparse
from pathlib import Path

from inceptionnet.factory import load_model
from inceptionnet.models import list_models
from inceptionnet.quantization.calibration import DEFAULT_METHOD, METHODS
from inceptionnet.quantization.int8folder import MODEL_FILE, TARGETS
from inceptionnet.quantization.quantize import (
    CHECK_IMAGES,
    DEFAULT_IMAGES,
    DEFAULT_ROUNDING,
    MIN_AGREEMENT,
    ROUNDINGS,
    QuantizeResult,
    quantize_model,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8 post-training quantization for OpenVINO / ONNX Runtime, checked against the fp32 network",
        description="Export the network to ONNX, measure its activations on calibration images (read with the "
        f"network's own preprocessing) and write FOLDER/{MODEL_FILE} (int8 weights and activations, ONNX Runtime's "
        "QDQ format) with FOLDER/config.json. predict, eval and bench run the folder on OpenVINO where installed, "
        f"else on ONNX Runtime. The int8 network is compared with the fp32 network on {CHECK_IMAGES} calibration "
        "images on this machine, and not written if they agree less than --min-agreement (docs/export.md, "
        "'int8 quantization').",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"a network ({', '.join(list_models())}), NAME:WEIGHTS, a run folder, a model folder, a weights file "
        "or hf-hub:ORG/NAME (docs/weights.md)",
    )
    p.add_argument(
        "--calibration",
        required=True,
        metavar="DIR",
        help="images like those the network will see: a folder of images (any layout, e.g. the training folder) "
        "or a split of another data source, such as a folder with a metadata.csv (docs/training.md, Data sources)",
    )
    p.add_argument("--output", metavar="FOLDER", help="output folder (default: NETWORK-int8)")
    p.add_argument(
        "--images",
        type=int,
        default=DEFAULT_IMAGES,
        metavar="N",
        help=f"calibration images, drawn at random from DIR (default: {DEFAULT_IMAGES})",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help=f"how activation ranges are chosen from the calibration images (default: {DEFAULT_METHOD})",
    )
    p.add_argument(
        "--rounding",
        choices=ROUNDINGS,
        default=DEFAULT_ROUNDING,
        help="how the int8 weights are rounded: gptq (each convolution's output on the calibration images "
        "kept close to fp32; seconds to minutes more) or nearest (each weight to its nearest step) "
        f"(default: {DEFAULT_ROUNDING})",
    )
    _add_cpu_options(p)
    p.set_defaults(func=run)


def _add_cpu_options(p: argparse.ArgumentParser) -> None:
    """Which CPUs the weights are for, and how close to fp32 the int8 network must be on this one."""
    p.add_argument(
        "--target-cpu",
        choices=TARGETS,
        default="auto",
        help="the CPUs the int8 weights are made for: vnni (8-bit weights, exact on CPUs with VNNI or AMX; an "
        "x86 CPU without them runs the folder with its weights narrowed to 7 bits), any (7-bit weights, exact "
        "on every CPU) or auto: vnni where this CPU has VNNI or AMX, else any (default: auto)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=MIN_AGREEMENT,
        metavar="FRACTION",
        help="write the folder only if the int8 network's top-1 class (multi-label: its label decisions) agrees "
        f"with fp32 on at least this fraction of the check images; 0 writes it whatever (default: {MIN_AGREEMENT})",
    )


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    output = Path(args.output) if args.output else Path(f"{model.model_name}-int8")
    result = quantize_model(
        model,
        args.calibration,
        output,
        images=args.images,
        method=args.method,
        rounding=args.rounding,
        target_cpu=args.target_cpu,
        min_agreement=args.min_agreement,
    )
    print(format_result(result))
    return 0


def format_result(result: QuantizeResult) -> str:
    """What the command prints: the folder, the calibration, the check against fp32."""
    skipped = f", {result.skipped} unreadable skipped" if result.skipped else ""
    kept = f"; kept in fp32: {', '.join(result.fp32_nodes)}" if result.fp32_nodes else ""
    bits = "8-bit weights for CPUs with VNNI or AMX" if result.weight_range == 127 else "7-bit weights for any CPU"
    lines = [
        f"wrote {result.model_file} and config.json in {result.seconds:.0f}s: {result.method} calibration on "
        f"{result.calibration_images} images{skipped}, {bits}, rounded by {result.rounding}{kept}",
        *result.notes,
    ]
    agreement = result.agreement
    if agreement is not None:
        what = (
            f"top-1 agreement with fp32 {agreement:.1%}"
            if result.label_agreement is None
            else f"label agreement with fp32 {agreement:.1%} of (image, class) decisions, exact match "
            f"{result.exact_agreement:.1%} of images"
        )
        lines.append(
            f"check on {result.check_engine}, {result.check_images} calibration images: {what}, "
            f"max logit difference {result.max_logit_diff:.3g}"
        )
        if agreement < MIN_AGREEMENT:  # written all the same: --min-agreement was lowered
            lines.append(
                f"warning: the int8 network disagrees with fp32 on {1 - agreement:.0%} of the check "
                f"{'images' if result.label_agreement is None else 'decisions'}. A network whose largest logits are "
                "nearly tied (untrained or barely trained) does this; "
                "measure the agreement on held-out images before deploying (docs/export.md, 'int8 quantization')"
            )
    return "\n".join(lines)
