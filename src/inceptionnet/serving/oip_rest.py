"""The Open Inference Protocol's HTTP/REST form: inference requests and responses as JSON, with the binary
tensor data extension that Triton's clients use by default.

A request body is JSON, or, with the header `Inference-Header-Content-Length: N`, N bytes of JSON followed
by the inputs' raw bytes in input order, each input's size in its `binary_data_size` parameter. Raw BYTES
are each element's 4-byte little-endian length and its bytes; in JSON a BYTES element (an image file)
is its base64 text, since JSON cannot carry bytes. A response is JSON unless the request asks for
binary outputs (`binary_data_output` in its parameters, or `binary_data` per output): then the JSON
header is followed by the outputs' raw bytes and its length is in `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np

from inceptionnet.serving.oip import DTYPES, InferRequest, Requested, Tensor
from inceptionnet.serving.service import Rejected

HEADER_LENGTH = "inference-header-content-length"


def read_infer(body: bytes, header_length: str | None) -> InferRequest:
    """The inference request of an HTTP body; Rejected (400) naming what is malformed."""
    size = _header_size(header_length, len(body))
    try:
        head = json.loads(body[:size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Rejected(400, f"the inference request is not JSON ({err}); send the protocol's JSON") from None
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list):
        raise Rejected(400, "the inference request has no 'inputs' list; send {'inputs': [{'name': ...}]}")
    raw, inputs = memoryview(body)[size:], []
    for item in head["inputs"]:
        tensor, used = _input(item, raw)
        inputs.append(tensor)
        raw = raw[used:]
    if len(raw):
        raise Rejected(400, f"{len(raw)} bytes after the inputs' binary data; check each input's binary_data_size")
    params = head.get("parameters") or {}
    outputs = [_requested(o, bool(params.get("binary_data_output"))) for o in head.get("outputs") or []]
    return InferRequest(head.get("id"), inputs, outputs, bool(params.get("binary_data_output")))


def _header_size(header_length: str | None, total: int) -> int:
    if header_length is None:
        return total
    if not header_length.isdigit() or int(header_length) > total:
        raise Rejected(400, f"Inference-Header-Content-Length {header_length!r} is not a size within the body")
    return int(header_length)


def _input(item: Any, raw: memoryview) -> tuple[Tensor, int]:
    """One input of the request's JSON, with its data from JSON or from `raw`; the raw bytes it used."""
    try:
        name, datatype, shape = str(item["name"]), str(item["datatype"]), [int(d) for d in item["shape"]]
    except (KeyError, TypeError, ValueError):
        raise Rejected(400, "each input needs a name, a datatype and a shape (a list of sizes)") from None
    if any(d < 0 for d in shape):
        raise Rejected(400, f"input {name!r} has shape {shape}; sizes cannot be negative")
    count = int(np.prod(shape)) if shape else 1
    binary = (item.get("parameters") or {}).get("binary_data_size")
    if binary is None:
        return Tensor(name, datatype, shape, _from_json(name, datatype, item.get("data"), count)), 0
    if not isinstance(binary, int) or binary < 0 or binary > len(raw):
        raise Rejected(400, f"input {name!r}: binary_data_size {binary!r} is past the body's end")
    return Tensor(name, datatype, shape, from_raw(name, datatype, bytes(raw[:binary]), count)), binary


def from_raw(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray | list[bytes]:
    """`count` elements of `datatype` from their raw bytes (BYTES: length-prefixed); Rejected when they differ."""
    if datatype == "BYTES":
        elements, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise Rejected(400, f"input {name!r}: BYTES data ends inside an element's length")
            (n,) = struct.unpack_from("<I", raw, at)
            elements.append(raw[at + 4 : at + 4 + n])
            at += 4 + n
        if at != len(raw) or len(elements) != count:
            raise Rejected(400, f"input {name!r}: BYTES data holds {len(elements)} elements, its shape says {count}")
        return elements
    dtype = _dtype(name, datatype)
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise Rejected(400, f"input {name!r}: {len(raw)} bytes of {datatype} for {count} elements")
    return np.frombuffer(raw, dtype=dtype)


def _from_json(name: str, datatype: str, data: Any, count: int) -> np.ndarray | list[bytes]:
    flat = np.asarray(data if data is not None else [], dtype=object).reshape(-1).tolist()
    if len(flat) != count:
        raise Rejected(400, f"input {name!r}: {len(flat)} values for a shape of {count} elements")
    if datatype == "BYTES":
        try:
            return [base64.b64decode(str(v), validate=True) for v in flat]
        except (binascii.Error, ValueError):
            raise Rejected(400, f"input {name!r}: in JSON, each BYTES element is a file's base64 text") from None
    try:
        return np.asarray(flat, dtype=_dtype(name, datatype))
    except (TypeError, ValueError, OverflowError):
        raise Rejected(400, f"input {name!r}: its values are not {datatype}") from None


def _dtype(name: str, datatype: str) -> Any:
    if datatype not in DTYPES:
        raise Rejected(400, f"input {name!r}: unknown datatype {datatype!r}")
    return DTYPES[datatype]


def _requested(item: Any, binary: bool) -> Requested:
    if not isinstance(item, dict) or "name" not in item:
        raise Rejected(400, "each requested output needs a name")
    params = item.get("parameters") or {}
    classification = params.get("classification", 0)
    if not isinstance(classification, int) or classification < 0:
        raise Rejected(400, f"output {item['name']!r}: classification must be a count of classes")
    return Requested(str(item["name"]), classification, bool(params.get("binary_data", binary)))


def write_infer(model: str, version: str, request: InferRequest, outputs: list[Tensor]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or JSON then the binary outputs the request asked for."""
    asked = {r.name: r.binary for r in request.outputs}
    items, raw = [], []
    for tensor in outputs:
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if asked.get(tensor.name, request.binary_output):
            data = to_raw(tensor)
            item["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            item["data"] = (
                [b.decode() for b in tensor.data] if tensor.datatype == "BYTES" else tensor.data.reshape(-1).tolist()
            )
        items.append(item)
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": items}
    if request.id is not None:
        head["id"] = request.id
    body = json.dumps(head).encode()
    if not raw:
        return body, {}
    return body + b"".join(raw), {"Inference-Header-Content-Length": str(len(body))}


def to_raw(tensor: Tensor) -> bytes:
    """The raw bytes of a tensor's data (BYTES: each element's 4-byte length, then its bytes)."""
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in tensor.data)
    return np.ascontiguousarray(tensor.data).tobytes()
