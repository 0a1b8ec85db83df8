"""Run the server: the network opened as `predict` opens it, run once at every batch size it will run
(so that no request waits for an engine's first call at a size; on OpenVINO the batches are padded to
powers of two), behind uvicorn, until SIGTERM or Ctrl-C.

Shutdown is uvicorn's graceful one: it stops accepting connections, waits for the requests in flight
(up to DRAIN_SECONDS), then ends the application's lifespan, where the batcher answers what is still
queued. uvicorn sends the signal it caught to the process again after shutting down; the handlers
installed here take it quietly, so that a drained server exits with status 0 (and Ctrl-C prints no
traceback).
"""

from __future__ import annotations

import signal
from types import FrameType

from inceptionnet.extras import installed, missing
from inceptionnet.inference.engines import Log, describe_engine
from inceptionnet.inference.loading import inference_device, names_int8_folder, open_for_inference
from inceptionnet.serving.app import create_app
from inceptionnet.serving.service import MAX_PIXELS, Classifier, Explainer

DRAIN_SECONDS = 30


def check_installed() -> None:
    """A ValueError naming the extra when FastAPI, uvicorn or python-multipart is missing."""
    # python-multipart's module is python_multipart (multipart in releases before 0.0.13, a warning shim after)
    needed = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart")}
    absent = [name for name, modules in needed.items() if not any(installed(m) for m in modules)]
    if absent:
        raise missing(", ".join(absent), extra="serve", purpose="inceptionnet serve")


def serve(
    spec: str,
    *,
    weights: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    engine: str = "auto",
    dtype: str | None = None,
    device: str | None = None,
    top_k: int | None = None,
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    api_key: str | None = None,
    max_upload_mb: float = 20.0,
    max_pixels: int = MAX_PIXELS,
    log: Log = print,
) -> None:
    """Serve the network `spec` names (any `predict --model`) on http://host:port until stopped."""
    check_installed()
    import uvicorn

    int8 = names_int8_folder(spec, weights)
    dev = inference_device([spec], weights=weights, engine=engine, dtype=dtype, device=device)
    model = open_for_inference(spec, weights=weights, engine=engine, dtype=dtype, device=device, log=log)
    classifier = Classifier(model.to(dev), device=dev, top_k=top_k, max_pixels=max_pixels, max_batch=max_batch)
    explainer = None if int8 else Explainer(spec, weights)
    app = create_app(
        classifier,
        explainer,
        max_batch=max_batch,
        max_wait=max_wait_ms / 1000,
        api_key=api_key,
        max_upload=int(max_upload_mb * 2**20),
        host=host,
    )
    log(f"engine: {describe_engine(model)}; batches of up to {max_batch} images, waiting up to {max_wait_ms:g} ms")
    classifier.warm_up()
    log(f"serving {classifier.card.model_name} on http://{host}:{port}/" + (" (API key required)" if api_key else ""))
    config = uvicorn.Config(
        app, host=host, port=port, access_log=False, timeout_graceful_shutdown=DRAIN_SECONDS, log_level="info"
    )
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _after_shutdown)
    uvicorn.Server(config).run()


def _after_shutdown(signum: int, frame: FrameType | None) -> None:
    """Takes the SIGTERM or SIGINT uvicorn raises again once it has drained: the shutdown is already done."""
