"""Run the server: the network opened as `predict` opens it, run once at every batch size it will run
(so that no request waits for an engine's first call at a size; on OpenVINO the batches are padded to
powers of two), behind uvicorn, until SIGTERM or Ctrl-C. The Grad-CAM network is a copy of the same
network, taken before the engine converts it: one read of the weights serves both, so overlays always
explain the predictions' weights, even while a run folder's weights are being replaced.

uvicorn runs with the protocol of connections.py (deadlines for a request's header, a cap on open
connections); its keep-alive timeout closes idle connections.

Shutdown is uvicorn's graceful one: it stops accepting connections, waits for the requests in flight
(up to DRAIN_SECONDS), then ends the application's lifespan, where the batcher answers what is still
queued. uvicorn sends the signal it caught to the process again after shutting down; the handlers
installed here take it quietly, so that a drained server exits with status 0 (and Ctrl-C prints no
traceback).
"""

from __future__ import annotations

import copy
import signal
from types import FrameType

import torch

from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.extras import installed, missing
from inceptionnet.factory import load_model
from inceptionnet.inference.engines import Log, describe_engine, inference_network
from inceptionnet.inference.features import feature_network
from inceptionnet.inference.loading import inference_device, names_int8_folder, open_for_inference
from inceptionnet.retrieval.search import Gallery, retrieval_installed
from inceptionnet.serving.app import DRAIN_SECONDS, create_app
from inceptionnet.serving.connections import deadline_protocol
from inceptionnet.serving.limits import Limits
from inceptionnet.serving.metrics import Metrics
from inceptionnet.serving.service import Classifier, Explainer
from inceptionnet.serving.similar import Similarity


def check_installed(*, grpc: bool = False, retrieval: bool = False) -> None:
    """A ValueError naming the extra when FastAPI, uvicorn, python-multipart or prometheus-client is missing (and
    with `grpc`, the gRPC service's grpcio and tritonclient; with `retrieval`, pyarrow and FAISS for --index)."""
    if retrieval:
        retrieval_installed()
    if grpc and not (installed("grpc") and installed("tritonclient.grpc")):
        raise missing("grpcio, tritonclient[grpc]", extra="grpc", purpose="serve --grpc-port")
    # python-multipart's module is python_multipart (multipart in releases before 0.0.13, a warning shim after)
    needed = {
        "fastapi": ("fastapi",),
        "uvicorn": ("uvicorn",),
        "python-multipart": ("python_multipart", "multipart"),
        "prometheus-client": ("prometheus_client",),
    }
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
    limits: Limits | None = None,
    model_name: str | None = None,
    grpc_port: int | None = None,
    index: str | None = None,
    log: Log = print,
) -> None:
    """Serve the network `spec` names (any `predict --model`) on http://host:port until stopped; with
    `grpc_port`, the Open Inference Protocol's gRPC service on host:grpc_port too; with `index` (an embeddings
    file of the same network), /v1/similar and the thumbnails of its images."""
    check_installed(grpc=grpc_port is not None, retrieval=index is not None)
    import uvicorn

    limits, metrics = limits or Limits(), Metrics()
    dev = inference_device([spec], weights=weights, engine=engine, dtype=dtype, device=device)
    model, explainer = _networks(
        spec, weights, engine=engine, dtype=dtype, device=device, dev=dev, limits=limits, log=log
    )
    classifier = Classifier(model.to(dev), device=dev, top_k=top_k, max_pixels=limits.max_pixels, max_batch=max_batch)
    similarity = _similarity(index, model, classifier, dev, max_batch, log) if index is not None else None
    app = create_app(classifier, explainer, max_batch=max_batch, max_wait=max_wait_ms / 1000, api_key=api_key,
                     limits=limits, metrics=metrics, host=host, model_name=model_name, grpc_port=grpc_port,
                     similarity=similarity)  # fmt: skip
    log(f"engine: {describe_engine(model)}; batches of up to {max_batch} images, waiting up to {max_wait_ms:g} ms")
    classifier.warm_up()
    grpc = f" and grpc://{host}:{grpc_port}" if grpc_port is not None else ""
    key = " (API key required)" if api_key else ""
    log(f"serving {classifier.card.model_name} on http://{host}:{port}/{grpc}{key}")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=deadline_protocol(limits, metrics),
        loop="asyncio",  # the loop grpc.aio shares
        access_log=False,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        log_level="info",
    )
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _after_shutdown)
    uvicorn.Server(config).run()


def _networks(
    spec: str,
    weights: str | None,
    *,
    engine: str,
    dtype: str | None,
    device: str | None,
    dev: torch.device,
    limits: Limits,
    log: Log,
) -> tuple[DescribedNetwork, Explainer | None]:
    """The network the predictions run and the Grad-CAM explainer of the same weights (None for an int8
    folder: it has no PyTorch network)."""
    if names_int8_folder(spec, weights):
        return open_for_inference(spec, weights=weights, engine=engine, dtype=dtype, device=device, log=log), None
    net = load_model(spec, weights=weights, pretrained=True)
    explainer = Explainer(copy.deepcopy(net), device=dev, queue=limits.explain_queue)  # before the engine changes it
    return inference_network(net, engine, dtype=dtype, device=device, log=log), explainer


def _similarity(
    index: str, model: DescribedNetwork, classifier: Classifier, dev: torch.device, max_batch: int, log: Log
) -> Similarity:
    """The embeddings file `index` opened (its index built or read) with the served network's features, checked to
    be the network that wrote it, and run once at every batch size (as the classifier)."""
    gallery = Gallery(index, log=log)
    similarity = Similarity(gallery, feature_network(model, log=log).to(dev), device=dev, run_size=classifier.run_size)
    similarity.warm_up(sorted({classifier.run_size(n) for n in range(1, max_batch + 1)}))
    log(f"index: {gallery.index.kind} search over {gallery.index.size} images of {index}")
    return similarity


def _after_shutdown(signum: int, frame: FrameType | None) -> None:
    """Takes the SIGTERM or SIGINT uvicorn raises again once it has drained: the shutdown is already done."""
