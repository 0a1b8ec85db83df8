"""`inceptionnet explain`: Grad-CAM overlays of where the network looks, or the quadrant check of the maps."""

from __future__ import annotations

import argparse

from inceptionnet.cli.options import add_model_options, say
from inceptionnet.factory import load_model
from inceptionnet.inference.explain import explain, write_overlays
from inceptionnet.inference.pointing import pointing_rate
from inceptionnet.inference.predict import image_files


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="Grad-CAM overlays: where the network looks for its top classes (or a class you name)",
        description="Write, for each image, the network's view with the Grad-CAM heat map of its top-k classes "
        "(or of --class) blended in, as PNGs named IMAGE_RANK_CLASS_PERCENTpct.png. The map is taken on the "
        "last feature map before pooling (docs/explain.md). Needs the `explain` extra (pytorch-grad-cam). "
        "With --quadrant-check DATA, measure instead how often the map's peak falls in the quadrant of a "
        "grey canvas that holds the image.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files, or folders (their images, recursively)")
    add_model_options(p, also="; a PyTorch network, not an int8 folder: Grad-CAM needs gradients")
    p.add_argument("--class", dest="target", metavar="C", help="explain this class (an index, label or name)")
    p.add_argument("--top-k", type=int, default=1, help="explain the K most probable classes (default 1)")
    p.add_argument("--output", default="explain", metavar="DIR", help="folder for the overlays (default ./explain)")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="view size instead of the network's own: one heat-map cell per 32 px, so a 75 px network needs more",
    )
    p.add_argument("--device", default=None, help="cpu (default), cuda, ...")
    p.add_argument("--quadrant-check", metavar="DATA", help="image folder (split) for the quadrant check")
    p.add_argument("--per-class", type=int, default=10, help="images per class for --quadrant-check (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.images) == bool(args.quadrant_check):
        raise ValueError("give IMAGE files to explain, or --quadrant-check DATA (not both, not neither)")
    model = load_model(args.model, weights=args.weights, pretrained=True)
    if args.quadrant_check:
        print(pointing_rate(model, args.quadrant_check, per_class=args.per_class, device=args.device).format())
        return 0
    options = dict(target=args.target, top_k=args.top_k, input_size=args.input_size, device=args.device)
    explanations = explain(model, image_files(args.images), **options)
    for e, path in zip(explanations, write_overlays(explanations, args.output), strict=True):
        print(f"{e.source}: {e.probability:7.2%}  {e.name} (class {e.index}) -> {path}")
    say(f"{len(explanations)} overlays in {args.output}")
    return 0
