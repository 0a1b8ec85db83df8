"""The HTTP application: the routes of `/v1`, the Open Inference Protocol's `/v2` (oip_http.py) and its gRPC
service (oip_grpc.py) over one batcher, for the application's lifespan; with an index, /v1/similar and
/v1/indexed (similar.py) over a batcher of their own.

FastAPI/Starlette (the `serve` extra) is imported when `create_app` runs, not with this module, so that
`inceptionnet --help` and every other command work without the extra. The limits are one value, `Limits`
(limits.py); what each route does is in handlers.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from inceptionnet.serving.batcher import Batcher
from inceptionnet.serving.handlers import Handlers, endpoint
from inceptionnet.serving.limits import Limits
from inceptionnet.serving.metrics import Metrics
from inceptionnet.serving.oip import ModelProtocol, Statistics
from inceptionnet.serving.oip_grpc import grpc_server
from inceptionnet.serving.oip_http import oip_routes
from inceptionnet.serving.service import Classifier, Explainer
from inceptionnet.serving.similar import Similarity, similar_routes

DRAIN_SECONDS = 30  # requests in flight are answered for up to this long at shutdown


def create_app(
    classifier: Classifier,
    explainer: Explainer | None,
    *,
    max_batch: int,
    max_wait: float,
    api_key: str | None = None,
    limits: Limits | None = None,
    metrics: Metrics | None = None,
    host: str | None = None,
    model_name: str | None = None,
    grpc_port: int | None = None,
    similarity: Similarity | None = None,
) -> Any:
    """The ASGI application: the batcher (and, with `grpc_port`, the gRPC service) run for the application's
    lifespan; the batcher finishes its queue at shutdown. `host`: the address the server listens on (a
    loopback one limits the Host headers it answers). `model_name`: the model's name in the Open Inference
    Protocol (default the card's model name). `similarity`: an embeddings file's index and the served network's
    features, for /v1/similar and /v1/indexed (serving/similar.py), with a batcher of their own."""
    from fastapi import FastAPI

    limits, metrics = limits or Limits(), metrics or Metrics()
    protocol = ModelProtocol(classifier, model_name or classifier.card.model_name, max_batch=max_batch)
    stats = Statistics(protocol.name)

    def counted(size: int) -> None:
        metrics.batch(size)
        stats.batch(size)

    batcher = Batcher(
        classifier.forward, max_batch=max_batch, max_wait=max_wait, max_queue=limits.max_queue, on_batch=counted
    )
    h = Handlers(classifier, explainer, batcher, api_key=api_key, limits=limits, metrics=metrics, host=host)
    batchers = [batcher]
    similar = similar_routes(h, similarity, batchers, max_batch=max_batch, max_wait=max_wait)
    metrics.watch(
        queue=lambda: sum(b.queued for b in batchers),
        in_flight=lambda: h.in_flight,
        explaining=lambda: explainer.admitted if explainer is not None else 0,
    )

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        for b in batchers:
            b.start()
        grpc = None if grpc_port is None else grpc_server(h, protocol, stats, host=host or "127.0.0.1", port=grpc_port)
        if grpc is not None:
            await grpc.start()
        yield
        if grpc is not None:
            await grpc.stop(DRAIN_SECONDS)
        for b in batchers:
            await b.close()
        if explainer is not None:
            explainer.close()

    routes = [*_routes(h, protocol, stats), *similar]
    return FastAPI(routes=routes, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


def _routes(h: Handlers, protocol: ModelProtocol, stats: Statistics) -> list[Any]:
    """Every route: the page, health, metrics, `/v1` and the Open Inference Protocol's `/v2`."""
    from starlette.routing import Route

    return [
        Route("/", endpoint(h, "/", h.page, open_to_all=True), methods=["GET"]),
        Route("/healthz", endpoint(h, "/healthz", h.healthz, open_to_all=True, counted=False), methods=["GET"]),
        Route("/v1/model", endpoint(h, "/v1/model", h.model), methods=["GET"]),
        Route("/metrics", endpoint(h, "/metrics", h.metrics_text, counted=False), methods=["GET"]),
        Route("/v1/predict", endpoint(h, "/v1/predict", h.predict), methods=["POST"]),
        Route("/v1/explain", endpoint(h, "/v1/explain", h.explain), methods=["POST"]),
        *oip_routes(h, protocol, stats),
    ]
