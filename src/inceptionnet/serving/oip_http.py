"""The Open Inference Protocol's REST endpoints (`/v2`), beside `/v1` on the same port and the same batcher.

`GET /v2` (server metadata), `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/1]`
(model metadata), `.../ready`, `.../config` and `.../stats` (Triton's configuration and statistics
extensions), `POST .../infer`. The API key, the Host check, the limits and the metrics are those of
`/v1` (handlers.py); the health endpoints are open, as `/healthz` is.
"""

from __future__ import annotations

import time
from typing import Any

from inceptionnet.serving.handlers import JSON, Handlers, Reply, endpoint, json_reply
from inceptionnet.serving.oip import IMAGE, VERSION, ModelProtocol, Statistics
from inceptionnet.serving.oip_rest import HEADER_LENGTH, read_infer, write_infer
from inceptionnet.serving.requests import body
from inceptionnet.serving.service import Rejected


class OipHttp:
    """The `/v2` routes' handlers; `request` is a Starlette Request."""

    def __init__(self, h: Handlers, protocol: ModelProtocol, stats: Statistics) -> None:
        self.h, self.protocol, self.stats = h, protocol, stats

    async def server_metadata(self, request: Any) -> Reply:
        return json_reply(self.protocol.server_metadata())

    async def live(self, request: Any) -> Reply:
        return json_reply({"live": True})

    async def ready(self, request: Any) -> Reply:
        return json_reply({"ready": True})

    async def model_metadata(self, request: Any) -> Reply:
        self.check(request)
        return json_reply(self.protocol.metadata())

    async def model_ready(self, request: Any) -> Reply:
        self.check(request)
        return json_reply({"name": self.protocol.name, "ready": True})

    async def config(self, request: Any) -> Reply:
        self.check(request)
        return json_reply(self.protocol.config())

    async def statistics(self, request: Any) -> Reply:
        self.check(request)
        return json_reply(self.stats.to_dict())

    async def infer(self, request: Any) -> Reply:
        """One inference request: its input through the batcher, its outputs as the request asks."""
        self.check(request)
        start = time.perf_counter()
        infer = read_infer(await body(request, self.h.limits), request.headers.get(HEADER_LENGTH))
        tensor = self.protocol.input(infer)
        images = self.protocol.uploads(tensor) if tensor.name == IMAGE else self.protocol.pixels(tensor)
        try:
            probabilities = await self.h.classify(images, client=request)
        except Rejected:
            self.stats.request(False, time.perf_counter() - start, 0)
            raise
        self.stats.request(True, time.perf_counter() - start, len(images))
        data, headers = write_infer(self.protocol.name, VERSION, infer, self.protocol.outputs(infer, probabilities))
        return 200, data, "application/octet-stream" if headers else JSON, headers

    def check(self, request: Any) -> None:
        self.protocol.check(request.path_params["name"], request.path_params.get("version", ""))


def oip_routes(h: Handlers, protocol: ModelProtocol, stats: Statistics) -> list[Any]:
    """Starlette routes of the protocol, each model route with and without `/versions/{version}`."""
    from starlette.routing import Route

    o = OipHttp(h, protocol, stats)
    routes = [
        Route("/v2", endpoint(h, "/v2", o.server_metadata), methods=["GET"]),
        Route("/v2/health/live", endpoint(h, "/v2/health/live", o.live, open_to_all=True, counted=False)),
        Route("/v2/health/ready", endpoint(h, "/v2/health/ready", o.ready, open_to_all=True, counted=False)),
    ]
    for model in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        for tail, handler, method in (
            ("", o.model_metadata, "GET"),
            ("/ready", o.model_ready, "GET"),
            ("/config", o.config, "GET"),
            ("/stats", o.statistics, "GET"),
            ("/infer", o.infer, "POST"),
        ):
            label = f"/v2/models/{{name}}{tail}"  # one metrics label for every model path of the route
            routes.append(Route(model + tail, endpoint(h, label, handler), methods=[method]))
    return routes
