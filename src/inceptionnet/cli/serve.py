"""`inceptionnet serve`: a network behind HTTP (JSON API, Prometheus metrics) with a web page."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from inceptionnet.cli.options import MODEL_HELP, add_engine_options, add_weights_option, say
from inceptionnet.data.images import MAX_PIXELS as READER_MAX_PIXELS
from inceptionnet.serving.limits import Limits
from inceptionnet.serving.server import DRAIN_SECONDS, serve

API_KEY_ENV = "INCEPTIONNET_API_KEY"  # where the API key may come from instead of the command line


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="an HTTP service (JSON API and a web page) that classifies uploaded images",
        description="Serve a network over HTTP: POST /v1/predict (multipart field 'file', or an image/* body) "
        "answers the top-k classes as JSON, POST /v1/explain the Grad-CAM overlay, /v2 the Open Inference Protocol "
        "(KServe v2, as Triton speaks it; gRPC too with --grpc-port), GET /v1/model the model card, "
        "GET /healthz, GET /metrics (Prometheus); GET / is a web page to drop images on. Requests that arrive "
        "together share a forward (--max-batch, --max-wait-ms). SIGTERM or Ctrl-C drains the requests in flight "
        f"(up to {DRAIN_SECONDS} s) and exits 0. Needs the `serve` extra (docs/serving.md).",
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help=MODEL_HELP + ", or an int8 folder of `inceptionnet quantize`")
    add_weights_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_engine_options(p)
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--max-batch", type=int, default=16, help="most images in one forward (default 16)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="longest wait of the first queued image for requests still being decoded to join its batch; a lone "
        "request does not wait (default 5 ms)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on every endpoint but /healthz and the page (every user of the "
        f"machine can read a command line: prefer --api-key-file or ${API_KEY_ENV})",
    )
    p.add_argument(
        "--api-key-file",
        default=None,
        metavar="FILE",
        help=f"the API key as the first line of FILE (or set ${API_KEY_ENV}); the same as --api-key, unseen by others",
    )
    p.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve the Open Inference Protocol over gRPC on this port (the `grpc` extra; REST /v2 is always on)",
    )
    p.add_argument(
        "--model-name", default=None, help="the model's name in the Open Inference Protocol (default: the card's)"
    )
    p.add_argument(
        "--index",
        default=None,
        metavar="FILE.parquet",
        help="an embeddings file of this network (inceptionnet embed): POST /v1/similar answers each uploaded "
        "image's nearest indexed images, GET /v1/indexed/ROW their thumbnails, and the page shows them",
    )
    add_limit_options(p)
    p.add_argument("--top-k", type=int, default=None, help="classes per image in the answers (default 5, at most all)")
    p.set_defaults(func=run)


def add_limit_options(p: argparse.ArgumentParser) -> None:
    """The server's limits (docs/serving.md, "Security"), with the defaults of `Limits`."""
    d = Limits()
    g = p.add_argument_group("limits", "what one client may ask of the server (docs/serving.md, Security)")
    mb, mp = d.max_upload / 2**20, d.max_pixels / 1e6
    g.add_argument("--max-upload-mb", type=float, default=mb, help=f"largest request body in MB (default {mb:g})")
    g.add_argument("--max-files", type=int, default=d.max_files, help=f"most images in one request ({d.max_files})")
    g.add_argument(
        "--max-megapixels", type=float, default=mp, help=f"largest image, read from its header before decoding ({mp:g})"
    )
    g.add_argument(
        "--max-request-megapixels",
        type=float,
        default=d.max_request_pixels / 1e6,
        help=f"most pixels of all the images of one request together ({d.max_request_pixels / 1e6:g})",
    )
    g.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help=f"most images waiting for the network; 503 beyond ({d.max_queue})",
    )
    g.add_argument(
        "--max-concurrent",
        type=int,
        default=d.max_concurrent,
        help=f"most requests handled at once, /healthz and /metrics aside; 503 beyond ({d.max_concurrent})",
    )
    g.add_argument(
        "--max-connections", type=int, default=d.max_connections, help=f"most open connections ({d.max_connections})"
    )
    g.add_argument(
        "--explain-queue",
        type=int,
        default=d.explain_queue,
        help=f"Grad-CAM requests waiting behind the one running; 429 beyond ({d.explain_queue})",
    )
    g.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout,
        help=f"seconds for a request's whole header to arrive, or the connection is closed ({d.header_timeout:g})",
    )
    g.add_argument(
        "--body-timeout",
        type=float,
        default=d.body_timeout,
        help=f"seconds for a request's whole body to arrive after its header; 408 after ({d.body_timeout:g})",
    )


def limits(args: argparse.Namespace) -> Limits:
    """The limits the options give, checked."""
    if args.max_megapixels * 1e6 > READER_MAX_PIXELS:
        raise ValueError(
            f"--max-megapixels {args.max_megapixels:g} is above what the image reader decodes at all "
            f"({READER_MAX_PIXELS / 1e6:g} MP, Pillow's bomb limit); choose {READER_MAX_PIXELS / 1e6:g} or less"
        )
    return Limits(
        max_upload=int(args.max_upload_mb * 2**20),
        max_files=args.max_files,
        max_pixels=int(args.max_megapixels * 1e6),
        max_request_pixels=int(args.max_request_megapixels * 1e6),
        max_queue=args.max_queue,
        max_concurrent=args.max_concurrent,
        explain_queue=args.explain_queue,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
    )


def run(args: argparse.Namespace) -> int:
    if args.max_batch < 1 or args.max_wait_ms < 0:
        raise ValueError("--max-batch must be 1 or more, --max-wait-ms 0 or more")
    serve(
        args.model,
        weights=args.weights,
        host=args.host,
        port=args.port,
        engine=args.engine,
        dtype=args.dtype,
        device=args.device,
        top_k=args.top_k,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        api_key=api_key(args),
        limits=limits(args),
        model_name=args.model_name,
        grpc_port=args.grpc_port,
        index=args.index,
        log=say,
    )
    return 0


def api_key(args: argparse.Namespace) -> str | None:
    """The API key from --api-key, --api-key-file or $INCEPTIONNET_API_KEY (one of them), None without one."""
    given = {
        "--api-key": args.api_key,
        "--api-key-file": args.api_key_file,
        f"${API_KEY_ENV}": os.environ.get(API_KEY_ENV) or None,
    }
    chosen = {source: value for source, value in given.items() if value is not None}
    if len(chosen) > 1:
        raise ValueError(f"the API key is given twice ({' and '.join(chosen)}); give it one way")
    if args.api_key_file is not None:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as err:
            raise ValueError(
                f"cannot read an API key from {args.api_key_file} ({err}); put the key on its first line"
            ) from None
        chosen = {"--api-key-file": key}
    key = next(iter(chosen.values()), None)
    if key is not None and not key.strip():
        raise ValueError(f"the API key from {next(iter(chosen))} is empty; give a key, or none to serve without one")
    return key
