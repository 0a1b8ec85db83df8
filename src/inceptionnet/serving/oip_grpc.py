"""The Open Inference Protocol over gRPC: the service `inference.GRPCInferenceService` on `--grpc-port`, in
the HTTP server's event loop, over the same batcher, API key (the `authorization: Bearer KEY` metadata),
concurrency limit and metrics (endpoint `grpc:METHOD`, with the HTTP status the answer stands for).

Its messages are those of Triton's client package (`tritonclient[grpc]`, the `grpc` extra), generated
from the protocol's own `.proto` files, so that a client and this server read the same definitions.
Inputs come as `raw_input_contents` (what tritonclient sends) or as typed `contents`. The protocol's
other methods (shared memory, repository control, traces) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from inceptionnet.serving.handlers import Handlers, log_failure
from inceptionnet.serving.oip import IMAGE, VERSION, InferRequest, ModelProtocol, Requested, Statistics, Tensor
from inceptionnet.serving.oip_rest import from_raw, to_raw
from inceptionnet.serving.service import Rejected

# the gRPC status each refusal stands for
CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def grpc_server(h: Handlers, protocol: ModelProtocol, stats: Statistics, *, host: str, port: int) -> Any:
    """A grpc.aio server of the protocol on host:port, not yet started."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    size = h.limits.max_upload + 2**20  # the body limit, with room for the message's own fields
    options = [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=h.limits.max_concurrent)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(h, protocol, stats), server)
    server.add_insecure_port(f"{host}:{port}")
    return server


class Servicer:
    """The protocol's methods; any other the service defines answers UNIMPLEMENTED (`__getattr__`)."""

    def __init__(self, h: Handlers, protocol: ModelProtocol, stats: Statistics) -> None:
        from tritonclient.grpc import model_config_pb2, service_pb2

        self.h, self.protocol, self.stats, self.pb, self.config_pb = h, protocol, stats, service_pb2, model_config_pb2

    def __getattr__(self, name: str) -> Callable[[Any, Any], Awaitable[Any]]:
        async def unimplemented(request: Any, context: Any) -> Any:
            await _abort(context, 501, f"{name} is not offered by this server")

        return unimplemented

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return self.pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = request.name == self.protocol.name and request.version in ("", VERSION)
        return self.pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return await self.call(context, "ServerMetadata", lambda: self.pb.ServerMetadataResponse(**self._server()))

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        return await self.call(context, "ModelMetadata", lambda: self._metadata(request))

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        return await self.call(context, "ModelConfig", lambda: self._config(request))

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        return await self.call(context, "ModelStatistics", lambda: self._statistics(request))

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return await self.call(context, "ModelInfer", lambda: self._infer(request))

    async def call(self, context: Any, method: str, answer: Callable[[], Any]) -> Any:
        """`answer()` (awaited when it is a coroutine) behind the key and the concurrency limit, counted."""
        h, start, status = self.h, time.perf_counter(), 200
        try:
            h.authorize(SimpleNamespace(headers=dict(context.invocation_metadata())))
            if h.in_flight >= h.limits.max_concurrent:
                raise Rejected(503, f"the server handles {h.in_flight} requests, its limit", reason="concurrency")
            h.in_flight += 1
            try:
                reply = answer()
                return await reply if hasattr(reply, "__await__") else reply
            finally:
                h.in_flight -= 1
        except Rejected as err:
            status = err.status
            if err.reason is not None:
                h.metrics.refused(err.reason)
            await _abort(context, err.status, str(err))
        except Exception:  # a bug or a failing engine: logged with an id, answered without details
            status, request_id = 500, log_failure(f"grpc:{method}")
            await _abort(
                context, 500, f"internal error; the server's log has its details under request id {request_id}"
            )
        finally:
            h.metrics.request(f"grpc:{method}", status, time.perf_counter() - start)

    def _server(self) -> dict[str, Any]:
        return self.protocol.server_metadata()

    def _metadata(self, request: Any) -> Any:
        self.protocol.check(request.name, request.version)
        meta = self.protocol.metadata()
        tensors = {
            k: [self.pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta[k]] for k in ("inputs", "outputs")
        }
        return self.pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"], **tensors
        )

    def _config(self, request: Any) -> Any:
        from google.protobuf.json_format import ParseDict

        self.protocol.check(request.name, request.version)
        return self.pb.ModelConfigResponse(config=ParseDict(self.protocol.config(), self.config_pb.ModelConfig()))

    def _statistics(self, request: Any) -> Any:
        from google.protobuf.json_format import ParseDict

        if request.name:
            self.protocol.check(request.name, request.version)
        return ParseDict(self.stats.to_dict(), self.pb.ModelStatisticsResponse())

    async def _infer(self, request: Any) -> Any:
        self.protocol.check(request.model_name, request.model_version)
        start, infer = time.perf_counter(), read_grpc_infer(request)
        tensor = self.protocol.input(infer)
        images = self.protocol.uploads(tensor) if tensor.name == IMAGE else self.protocol.pixels(tensor)
        try:
            probabilities = await self.h.classify(images)
        except Rejected:
            self.stats.request(False, time.perf_counter() - start, 0)
            raise
        self.stats.request(True, time.perf_counter() - start, len(images))
        outputs = self.protocol.outputs(infer, probabilities)
        return self.pb.ModelInferResponse(
            model_name=self.protocol.name,
            model_version=VERSION,
            id=request.id,
            outputs=[
                self.pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
                for t in outputs
            ],
            raw_output_contents=[to_raw(t) for t in outputs],
        )


def read_grpc_infer(request: Any) -> InferRequest:
    """The protocol's request of a ModelInferRequest message: raw contents, else typed ones."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise Rejected(400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per input")
    inputs = []
    for i, item in enumerate(request.inputs):
        shape = list(item.shape)
        count = int(np.prod(shape)) if shape else 1
        data = from_raw(item.name, item.datatype, raw[i], count) if raw else _contents(item, count)
        inputs.append(Tensor(item.name, item.datatype, shape, data))
    outputs = [
        Requested(
            o.name, int(o.parameters["classification"].int64_param) if "classification" in o.parameters else 0, True
        )
        for o in request.outputs
    ]
    return InferRequest(request.id or None, inputs, outputs, True)


def _contents(item: Any, count: int) -> np.ndarray | list[bytes]:
    """Typed contents: BYTES from bytes_contents, UINT8 from uint_contents (the types this model takes)."""
    if item.datatype == "BYTES":
        data: np.ndarray | list[bytes] = list(item.contents.bytes_contents)
    elif item.datatype == "UINT8":
        data = np.asarray(item.contents.uint_contents, dtype=np.uint32)
        if data.size and data.max() > 255:
            raise Rejected(400, f"input {item.name!r}: UINT8 values above 255")
        data = data.astype(np.uint8)
    else:
        raise Rejected(400, f"input {item.name!r} {item.datatype}: send BYTES images or UINT8 pixels")
    if len(data) != count:
        raise Rejected(400, f"input {item.name!r}: {len(data)} values for a shape of {count} elements")
    return data


async def _abort(context: Any, status: int, message: str) -> None:
    import grpc

    await context.abort(getattr(grpc.StatusCode, CODES.get(status, "INTERNAL")), message)
