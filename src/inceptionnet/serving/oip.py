"""The Open Inference Protocol (KServe v2, as Triton speaks it): the model's description and its tensors,
apart from how they travel (oip_rest.py over HTTP, oip_grpc.py over gRPC).

One model, named by `serve --model-name` (default the card's model name), version "1". One input per
request, either:

- `image`: BYTES, shape [N] (or [N, 1]), one encoded image file per element, read exactly as every
  command reads files (the formats and pixel limits of data/images.py, the card's preprocessing);
- `pixels`: UINT8, shape [N, S, S, 3] at the card's input size S: decoded, resized and cropped RGB, the
  input of `export --with-preprocessing` (scaled by 1/255 and normalised by the card's mean and std).

One output, `probabilities`: FP32 [N, classes], the numbers `/v1/predict` and `predict` give. Triton's
classification extension: an output requested with `classification: K` is instead BYTES [N, K], the
K most probable classes as "score:index:label" (label: the line of the labels file that
`export --format triton` writes). Statistics follow Triton's statistics extension, for the one model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from inceptionnet._version import __version__
from inceptionnet.export.triton import label_lines
from inceptionnet.serving.service import Classifier, Rejected

VERSION = "1"
IMAGE, PIXELS, OUTPUT = "image", "pixels", "probabilities"
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]
# the protocol's datatypes as numpy dtypes (BYTES: a list of bytes per element)
DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


@dataclass
class Tensor:
    """A named tensor: `data` a numpy array of `shape`, or for BYTES a flat list of byte strings."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]


@dataclass
class Requested:
    """An output the client asked for: `classification` > 0 asks for the top classes as strings."""

    name: str
    classification: int = 0
    binary: bool = False


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[Requested] = field(default_factory=list)  # none: every output
    binary_output: bool = False


class ModelProtocol:
    """What the protocol says about the served model, and its tensors to and from the server's batches."""

    def __init__(self, classifier: Classifier, name: str, *, max_batch: int) -> None:
        self.classifier, self.name, self.max_batch = classifier, name, max_batch
        self.size = classifier.model.preprocessing.input_size
        self.classes = classifier.card.num_classes
        self.labels = label_lines(classifier.card)  # as the labels.txt of `export --format triton` lists them

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "inceptionnet", "version": __version__, "extensions": EXTENSIONS}

    def check(self, name: str, version: str = "") -> None:
        """Rejected (404) unless `name` (and `version`, when given) is the served model."""
        if name != self.name or version not in ("", VERSION):
            raise Rejected(404, f"no model {name!r} version {version or '(any)'}; this server has {self.name!r} v1")

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": "inceptionnet",
            "inputs": [
                {"name": IMAGE, "datatype": "BYTES", "shape": [-1]},
                {"name": PIXELS, "datatype": "UINT8", "shape": [-1, self.size, self.size, 3]},
            ],
            "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, self.classes]}],
        }

    def config(self) -> dict[str, Any]:
        """The model's configuration in Triton's terms (the JSON of its ModelConfig message)."""
        return {
            "name": self.name,
            "platform": "inceptionnet",
            "max_batch_size": self.max_batch,
            "input": [
                {"name": IMAGE, "data_type": "TYPE_STRING", "dims": [1]},
                {"name": PIXELS, "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC", "dims": [self.size, self.size, 3]},
            ],
            "output": [
                {"name": OUTPUT, "data_type": "TYPE_FP32", "dims": [self.classes], "label_filename": "labels.txt"}
            ],
            "dynamic_batching": {"max_queue_delay_microseconds": 0},
        }

    def input(self, request: InferRequest) -> Tensor:
        """The request's one input, checked; Rejected (400) naming what is wrong."""
        if len(request.inputs) != 1:
            names = ", ".join(t.name for t in request.inputs) or "none"
            raise Rejected(400, f"send one input, {IMAGE!r} (BYTES) or {PIXELS!r} (UINT8); got {names}")
        tensor = request.inputs[0]
        want = {IMAGE: "BYTES", PIXELS: "UINT8"}.get(tensor.name)
        if want is None or tensor.datatype != want:
            raise Rejected(
                400,
                f"input {tensor.name!r} {tensor.datatype}: this model takes {IMAGE!r} BYTES or "
                f"{PIXELS!r} UINT8 [N, {self.size}, {self.size}, 3]",
            )
        for requested in request.outputs:
            if requested.name != OUTPUT:
                raise Rejected(400, f"no output {requested.name!r}; this model's output is {OUTPUT!r}")
        return tensor

    def uploads(self, tensor: Tensor) -> list[tuple[str, bytes]]:
        """The encoded images of an `image` input, named by their position."""
        if not tensor.shape or any(d != 1 for d in tensor.shape[1:]) or len(tensor.data) != tensor.shape[0]:
            raise Rejected(400, f"input {IMAGE!r} has shape {tensor.shape}: send [N] (or [N, 1]), one file per element")
        return [(f"{IMAGE}[{i}]", bytes(data)) for i, data in enumerate(tensor.data)]

    def pixels(self, tensor: Tensor) -> torch.Tensor:
        """The network's inputs (N, 3, S, S) of a `pixels` input, prepared as the card says."""
        if list(tensor.shape[1:]) != [self.size, self.size, 3]:
            raise Rejected(
                400,
                f"input {PIXELS!r} has shape {tensor.shape}; this model takes [N, {self.size}, "
                f"{self.size}, 3] (decoded, resized and cropped RGB, as export --with-preprocessing)",
            )
        array = np.array(tensor.data, dtype=np.uint8).reshape(tensor.shape)  # a copy: the request buffer is read-only
        return self.classifier.prepare_pixels(torch.from_numpy(array))

    def outputs(self, request: InferRequest, probabilities: torch.Tensor) -> list[Tensor]:
        """The response's tensors: the probabilities, or the top classes where classification is asked."""
        asked = request.outputs or [Requested(OUTPUT)]
        return [self.output(r, probabilities) for r in asked]

    def output(self, requested: Requested, probabilities: torch.Tensor) -> Tensor:
        n = len(probabilities)
        if requested.classification <= 0:
            return Tensor(OUTPUT, "FP32", [n, self.classes], probabilities.numpy().astype(np.float32))
        k = min(requested.classification, self.classes)
        values, indices = probabilities.topk(k, dim=1)
        rows = [
            f"{v:f}:{i}:{self.labels[i]}".encode()
            for vs, js in zip(values.tolist(), indices.tolist(), strict=True)
            for v, i in zip(vs, js, strict=True)
        ]
        return Tensor(OUTPUT, "BYTES", [n, k], rows)


class Statistics:
    """Triton's statistics of the one model: requests answered or failed, images, batches by size."""

    def __init__(self, name: str) -> None:
        self.name, self._lock = name, threading.Lock()
        self.success = [0, 0]  # count, ns
        self.fail = [0, 0]
        self.images, self.executions, self.last_ms = 0, 0, 0
        self.batches: dict[int, int] = {}

    def request(self, ok: bool, seconds: float, images: int) -> None:
        with self._lock:
            counter = self.success if ok else self.fail
            counter[0] += 1
            counter[1] += int(seconds * 1e9)
            self.images += images if ok else 0
            self.last_ms = int(time.time() * 1000)

    def batch(self, size: int) -> None:
        with self._lock:
            self.executions += 1
            self.batches[size] = self.batches.get(size, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model_stats": [
                    {
                        "name": self.name,
                        "version": VERSION,
                        "last_inference": self.last_ms,
                        "inference_count": self.images,
                        "execution_count": self.executions,
                        "inference_stats": {
                            "success": {"count": self.success[0], "ns": self.success[1]},
                            "fail": {"count": self.fail[0], "ns": self.fail[1]},
                        },
                        "batch_stats": [
                            {"batch_size": size, "compute_infer": {"count": count, "ns": 0}}
                            for size, count in sorted(self.batches.items())
                        ],
                    }
                ]
            }
