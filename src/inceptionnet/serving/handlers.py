"""What each route of the server does: the API key, the Host check, the concurrency limit, the images of a
request through the batcher, and every answer (a refusal's JSON error, a 500's request id) counted.

Starlette is imported inside the functions that need it (the `serve` extra), so that `inceptionnet --help`
and every other command work without it. Every refusal is a 4xx (or a 503 when the server is at a limit,
with Retry-After) with `{"error": "..."}` naming the problem; the server goes on serving the next request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import PurePath
from typing import Any

import torch

from inceptionnet.serving.batcher import Batcher, QueueFull
from inceptionnet.serving.limits import Limits
from inceptionnet.serving.metrics import CONTENT_TYPE, Metrics
from inceptionnet.serving.requests import ClientGone, Upload, pixel_budget, unless_gone, uploads
from inceptionnet.serving.service import Classifier, Explainer, Rejected

Reply = tuple[int, bytes, str] | tuple[int, bytes, str, dict[str, str]]  # status, body, content type[, headers]
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
        limits: Limits,
        metrics: Metrics,
        host: str | None = None,
    ) -> None:
        self.classifier, self.explainer, self.batcher, self.metrics = classifier, explainer, batcher, metrics
        self.api_key, self.limits = api_key, limits
        self.hosts = _loopback_names(host)
        self.in_flight = 0  # requests being handled (health and metrics aside); changed on the event loop only

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
        """Top-k classes (or labels above threshold) of each uploaded image, in upload order; with the query
        parameter `reject_unknown=true`, also whether each is of none of the classes (the card's threshold)."""
        reject = self.reject_unknown(request)
        files = await uploads(request, self.limits)
        probs, scores = self.classifier.split(await self.outputs(files, client=request))
        scored = scores.tolist() if reject and scores is not None else [None] * len(files)
        results = [
            self.classifier.result(p, name, unknown_score=s)
            for (name, _), p, s in zip(files, probs, scored, strict=True)
        ]
        return json_reply({"model": self.classifier.card.model_name, "predictions": results})

    def reject_unknown(self, request: Any) -> bool:
        """The query parameter `reject_unknown` (true / false, 1 / 0, yes / no; default false), checked against
        the card: Rejected (400) when asked of a network whose card has no unknown-image threshold."""
        given = request.query_params.get("reject_unknown", "false").strip().lower()
        if given not in ("true", "1", "yes", "false", "0", "no"):
            raise Rejected(400, f"reject_unknown must be true or false, got {given[:20]!r}")
        if given in ("false", "0", "no"):
            return False
        if self.classifier.card.unknown is None:
            raise Rejected(
                400,
                "this server's network has no unknown-image threshold in its card: fit one with `inceptionnet "
                "calibrate RUN --data VAL` and serve that model, or drop reject_unknown",
            )
        return True

    async def classify(self, images: list[Upload] | torch.Tensor, *, client: Any | None = None) -> torch.Tensor:
        """Probabilities (N, classes) of encoded images (their headers checked, then decoded and prepared) or of
        prepared ones (N, C, H, W), through the batcher; `client` (a Starlette Request): dropped if it leaves."""
        return self.classifier.split(await self.outputs(images, client=client))[0]

    async def outputs(self, images: list[Upload] | torch.Tensor, *, client: Any | None = None) -> torch.Tensor:
        """`classify`'s rows as the batcher gives them: with the unknown-image scores where the card has a rule."""
        if len(images) > self.limits.max_files:
            raise Rejected(413, f"{len(images)} images in one request, above --max-files {self.limits.max_files}")
        try:
            with self.batcher.arriving(len(images)):  # queued before the count drops: a batch waiting gets them
                inputs = await asyncio.to_thread(self.prepare, images) if isinstance(images, list) else list(images)
                futures = [self.batcher.enqueue(x) for x in inputs]
        except QueueFull as err:
            raise Rejected(503, f"the server is busy ({err}); retry later", reason="queue") from None
        outputs = await (unless_gone(client, futures) if client is not None else asyncio.gather(*futures))
        return torch.stack(list(outputs))

    def prepare(self, files: list[Upload]) -> list[torch.Tensor]:
        """The network's inputs of a request's images: their headers checked together first, then each decoded."""
        pixel_budget(self.classifier, files, self.limits)
        return [self.classifier.prepare(data, name) for name, data in files]

    async def explain(self, request: Any) -> Reply:
        """The Grad-CAM overlay of one uploaded image as a base64 PNG: for its top class, or `?class=C`."""
        if self.explainer is None:
            raise Rejected(501, "Grad-CAM needs the PyTorch network; this server runs an int8 folder, which has none")
        with self.explainer.admit():
            files = await uploads(request, self.limits)
            if len(files) != 1:
                raise Rejected(400, f"explain takes one image, got {len(files)}; send one file per request")
            name, data = files[0]
            picture = await asyncio.to_thread(self.classifier.decode, data, name)
            return json_reply(await self.explainer.overlay(picture, name, request.query_params.get("class")))


def endpoint(h: Handlers, path: str, handler: Handler, *, open_to_all: bool = False, counted: bool = True) -> Handler:
    """`handler` behind the API key and (`counted`) the concurrency limit, with refusals as JSON errors and every
    answer counted in the metrics. The health and metrics endpoints are not counted: they answer under load."""
    from starlette.responses import Response

    async def endpoint(request: Any) -> Any:
        start = time.perf_counter()
        try:
            h.check_host(request)
            if not open_to_all:
                h.authorize(request)
            if counted and h.in_flight >= h.limits.max_concurrent:
                raise Rejected(
                    503, f"the server handles {h.in_flight} requests, its limit; retry later", reason="concurrency"
                )
            h.in_flight += counted
            try:
                status, body, kind, *more = await handler(request)
            finally:
                h.in_flight -= counted
            headers = more[0] if more else {}
        except ClientGone:  # nobody reads this answer; counted, with the status nginx logs for it
            h.metrics.refused("client_gone")
            (status, body, kind), headers = json_reply({"error": "the client closed the connection"}, 499), {}
        except Rejected as err:
            (status, body, kind), headers = _refusal(h, err)
        except Exception:  # a bug or a failing engine: logged with an id, answered without details, the server goes on
            (status, body, kind), headers = _internal_error(path)
        h.metrics.request(path, status, time.perf_counter() - start)
        return Response(body, status_code=status, media_type=kind, headers=headers)

    return endpoint


def _refusal(h: Handlers, err: Rejected) -> tuple[Reply, dict[str, str]]:
    """The JSON answer of a refusal with the headers it needs, counted by the limit that refused it."""
    headers = {}
    if err.reason is not None:
        h.metrics.refused(err.reason)
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if err.status in (429, 503):
        headers["Retry-After"] = str(h.limits.retry_after)
    if err.close:
        headers["Connection"] = "close"
    return json_reply({"error": str(err)}, err.status), headers


def _internal_error(path: str) -> tuple[Reply, dict[str, str]]:
    """A generic 500 with a request id; the exception's details go to the server's log under that id."""
    request_id = log_failure(path)
    message = f"internal error; the server's log has its details under request id {request_id}"
    return json_reply({"error": message, "request_id": request_id}, 500), {"X-Request-ID": request_id}


def log_failure(path: str) -> str:
    """Print the exception being handled to the server's log under a new request id, and return the id."""
    request_id = uuid.uuid4().hex[:16]
    print(f"request {request_id} ({path}) failed:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    return request_id


def _loopback_names(host: str | None) -> frozenset[str] | None:
    """The Host names a server bound to `host` answers: the loopback names when `host` is a loopback address,
    None (any) otherwise (a server on the network is reached by names this process cannot know)."""
    if host is None:
        return None
    if host not in ("localhost", "::1") and not host.startswith("127."):
        return None
    return frozenset({"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"})
