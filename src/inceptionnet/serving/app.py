"""The HTTP application: routes, the API key, upload limits, JSON errors and metrics around them.

Starlette (through FastAPI, the `serve` extra) is imported when `create_app` runs, not with this module,
so that `inceptionnet --help` and every other command work without the extra. Every refusal is a 4xx
with `{"error": "..."}` naming the problem; the server goes on serving the next request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import PurePath
from typing import Any

from inceptionnet.serving.batcher import Batcher
from inceptionnet.serving.metrics import CONTENT_TYPE, Metrics
from inceptionnet.serving.service import Classifier, Explainer, Rejected

Reply = tuple[int, bytes, str]  # status, body, content type
Handler = Callable[[Any], Awaitable[Reply]]
JSON = "application/json"


def json_reply(obj: Any, status: int = 200) -> Reply:
    return status, json.dumps(obj).encode(), JSON


class Handlers:
    """What each route does, with the limits it checks; `request` is a Starlette Request."""

    def __init__(
        self,
        classifier: Classifier,
        explainer: Explainer | None,
        batcher: Batcher,
        *,
        api_key: str | None,
        max_upload: int,
        max_files: int,
        metrics: Metrics,
        host: str | None = None,
    ) -> None:
        self.classifier, self.explainer, self.batcher, self.metrics = classifier, explainer, batcher, metrics
        self.api_key, self.max_upload, self.max_files = api_key, max_upload, max_files
        self.hosts = _loopback_names(host)

    def check_host(self, request: Any) -> None:
        """Bound to a loopback address, the server answers only requests addressed to it: a web page of another
        site that makes the browser resolve its own name to 127.0.0.1 (DNS rebinding) sends that name as Host."""
        if self.hosts is None:
            return
        given = request.headers.get("host", "")
        name = given[: given.find("]") + 1] if given.startswith("[") else given.rsplit(":", 1)[0]
        if name.lower() not in self.hosts:
            raise Rejected(
                403,
                f"this server answers requests addressed to {' or '.join(sorted(self.hosts))} only (Host: "
                f"{given[:100]!r}); it listens on a loopback address",
            )

    def authorize(self, request: Any) -> None:
        """With an API key, the request must carry `Authorization: Bearer KEY` (compared in constant time)."""
        if self.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Rejected(401, "this server needs an API key: send the header 'Authorization: Bearer KEY'")
        if not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise Rejected(401, "wrong API key; send the key the server was started with (--api-key)")

    async def page(self, request: Any) -> Reply:
        return (
            200,
            resources.files("inceptionnet.serving").joinpath("page.html").read_bytes(),
            "text/html; charset=utf-8",
        )

    async def healthz(self, request: Any) -> Reply:
        return json_reply({"status": "ok"})

    async def model(self, request: Any) -> Reply:
        """The network's card, without where its weights sit on this machine (a file name, not a path)."""
        card = self.classifier.card.to_dict()
        if card.get("weights_name"):
            card["weights_name"] = PurePath(str(card["weights_name"]).replace("\\", "/")).name
        return json_reply(card)

    async def metrics_text(self, request: Any) -> Reply:
        return 200, self.metrics.text().encode(), CONTENT_TYPE

    async def predict(self, request: Any) -> Reply:
        """Top-k classes (or labels above threshold) of each uploaded image, in upload order."""
        uploads = await self.uploads(request)
        with self.batcher.arriving(len(uploads)):  # queued before the count drops: a batch waiting for them gets them
            inputs = await asyncio.to_thread(lambda: [self.classifier.prepare(data, name) for name, data in uploads])
            futures = [self.batcher.enqueue(x) for x in inputs]
        outputs = await asyncio.gather(*futures)
        results = [self.classifier.result(p, name) for (name, _), p in zip(uploads, outputs, strict=True)]
        return json_reply({"model": self.classifier.card.model_name, "predictions": results})

    async def explain(self, request: Any) -> Reply:
        """The Grad-CAM overlay of one uploaded image as a base64 PNG: for its top class, or `?class=C`."""
        if self.explainer is None:
            raise Rejected(501, "Grad-CAM needs the PyTorch network; this server runs an int8 folder, which has none")
        uploads = await self.uploads(request)
        if len(uploads) != 1:
            raise Rejected(400, f"explain takes one image, got {len(uploads)}; send one file per request")
        name, data = uploads[0]
        picture = await asyncio.to_thread(self.classifier.decode, data, name)
        target = request.query_params.get("class")
        return json_reply(await asyncio.to_thread(self.explainer.overlay, picture, name, target))

    async def uploads(self, request: Any) -> list[tuple[str, bytes]]:
        """(name, bytes) of each image: the `file` fields of a multipart form, or the body of an image/* request."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (kind == "multipart/form-data" or kind.startswith("image/") or kind == "application/octet-stream"):
            raise Rejected(
                415,
                f"unsupported Content-Type {kind or '(none)'}: send multipart/form-data with "
                "the image in the field 'file', or the image's bytes with Content-Type image/*",
            )
        body = await self.body(request)
        if kind != "multipart/form-data":
            return [("image", body)]

        async def replay() -> dict[str, Any]:  # the form parser reads the body already read (and size-checked)
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await type(request)(request.scope, replay).form(
                max_files=self.max_files, max_part_size=self.max_upload
            )
        except Exception as err:  # the parser's errors are the client's malformed form
            raise Rejected(400, f"not a readable multipart form ({err})") from None
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise Rejected(400, "no image in the form: send each image in a multipart field named 'file'")
        return [(f.filename or f"file {i}", await f.read()) for i, f in enumerate(files)]

    async def body(self, request: Any) -> bytes:
        """The request body, refused (413) as soon as its declared or received size passes the limit."""
        limit = f"this server's limit of {self.max_upload / 2**20:g} MB (--max-upload-mb)"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_upload:
            raise Rejected(413, f"the upload is {int(declared) / 2**20:.1f} MB, above {limit}; send a smaller file")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_upload:
                raise Rejected(413, f"the upload passed {limit}; send a smaller file")
            chunks.append(chunk)
        return b"".join(chunks)


def create_app(
    classifier: Classifier,
    explainer: Explainer | None,
    *,
    max_batch: int,
    max_wait: float,
    api_key: str | None = None,
    max_upload: int = 20 * 2**20,
    max_files: int = 64,
    metrics: Metrics | None = None,
    host: str | None = None,
) -> Any:
    """The ASGI application: the batcher runs for the application's lifespan and finishes its queue at shutdown.
    `host`: the address the server listens on (a loopback one limits the Host headers it answers)."""
    from fastapi import FastAPI
    from starlette.routing import Route

    metrics = metrics or Metrics()
    batcher = Batcher(classifier.forward, max_batch=max_batch, max_wait=max_wait, on_batch=metrics.batch)
    h = Handlers(
        classifier,
        explainer,
        batcher,
        api_key=api_key,
        max_upload=max_upload,
        max_files=max_files,
        metrics=metrics,
        host=host,
    )

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()

    routes = [
        Route("/", _endpoint(h, "/", h.page, open_to_all=True), methods=["GET"]),
        Route("/healthz", _endpoint(h, "/healthz", h.healthz, open_to_all=True), methods=["GET"]),
        Route("/v1/model", _endpoint(h, "/v1/model", h.model), methods=["GET"]),
        Route("/metrics", _endpoint(h, "/metrics", h.metrics_text), methods=["GET"]),
        Route("/v1/predict", _endpoint(h, "/v1/predict", h.predict), methods=["POST"]),
        Route("/v1/explain", _endpoint(h, "/v1/explain", h.explain), methods=["POST"]),
    ]
    return FastAPI(routes=routes, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


def _endpoint(h: Handlers, path: str, handler: Handler, *, open_to_all: bool = False) -> Handler:
    """`handler` behind the API key, with refusals as JSON errors and every answer counted in the metrics."""
    from starlette.responses import Response

    async def endpoint(request: Any) -> Any:
        start = time.perf_counter()
        headers = {}
        try:
            h.check_host(request)
            if not open_to_all:
                h.authorize(request)
            status, body, kind = await handler(request)
        except Rejected as err:
            status, body, kind = json_reply({"error": str(err)}, err.status)
            if err.status == 401:
                headers["WWW-Authenticate"] = "Bearer"
        except Exception:  # a bug or a failing engine: logged with an id, answered without details, the server goes on
            request_id = uuid.uuid4().hex[:16]
            print(f"request {request_id} ({path}) failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            message = f"internal error; the server's log has its details under request id {request_id}"
            status, body, kind = json_reply({"error": message, "request_id": request_id}, 500)
            headers["X-Request-ID"] = request_id
        h.metrics.request(path, status, time.perf_counter() - start)
        return Response(body, status_code=status, media_type=kind, headers=headers)

    return endpoint


def _loopback_names(host: str | None) -> frozenset[str] | None:
    """The Host names a server bound to `host` answers: the loopback names when `host` is a loopback address,
    None (any) otherwise (a server on the network is reached by names this process cannot know)."""
    if host is None:
        return None
    if host not in ("localhost", "::1") and not host.startswith("127."):
        return None
    return frozenset({"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"})
