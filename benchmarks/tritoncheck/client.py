"""The checks of one served image classifier over the Open Inference Protocol, with Triton's tritonclient.

The model's contract is that of `inceptionnet export --format triton`: one input of uint8 pixels
[H, W, 3] (batched), one output of FP32 probabilities [classes] with a label file, dynamic batching.
Every request goes over HTTP and over gRPC; the reference, where given, is `inceptionnet predict --json`
on the same image files.
"""

from __future__ import annotations

import functools
import json
import queue
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

PROTOCOLS = {"HTTP": httpclient, "gRPC": grpcclient}
ANSWER_TIMEOUT_S = 60.0
STATISTICS_WAIT_S = 10.0


class CheckError(RuntimeError):
    """The server, the model's configuration or the reference is not what the check needs."""


@dataclass(frozen=True)
class Contract:
    input_name: str
    output_name: str
    height: int
    width: int
    classes: int
    max_batch: int


@dataclass(frozen=True)
class Reference:
    """predict --json: each image's known probabilities {class index: p} and top classes [(index, label)]."""

    probabilities: dict[Path, dict[int, float]]
    top: dict[Path, list[tuple[int, str]]]


def contract_of(config: dict[str, Any]) -> Contract:
    """The contract a model configuration (as JSON, from either protocol) states; CheckError where it differs."""
    inputs, outputs = config.get("input", []), config.get("output", [])
    # the pixels input of export --format triton; a server may offer others beside it (inceptionnet serve: image)
    pixels = [i for i in inputs if i["data_type"] == "TYPE_UINT8" and [int(d) for d in i["dims"]][2:] == [3]]
    if len(pixels) != 1 or len(outputs) != 1:
        kinds = [f"{i['name']} {i['data_type']} {i['dims']}" for i in inputs]
        raise CheckError(
            f"expected one UINT8 [H, W, 3] input and one output; the config has {kinds} and {len(outputs)} outputs"
        )
    given, answer = pixels[0], outputs[0]
    dims, out_dims = [int(d) for d in given["dims"]], [int(d) for d in answer["dims"]]
    if len(dims) != 3:
        raise CheckError(f"input {given['name']}: expected TYPE_UINT8 [H, W, 3], got {given['data_type']} {dims}")
    if answer["data_type"] != "TYPE_FP32" or len(out_dims) != 1:
        raise CheckError(f"output {answer['name']}: expected TYPE_FP32 [classes], got {answer['data_type']} {out_dims}")
    if not answer.get("label_filename"):
        raise CheckError(f"output {answer['name']} has no label_filename: classification would answer no labels")
    max_batch = int(config.get("max_batch_size", 0))
    if max_batch < 2 or "dynamic_batching" not in config:
        raise CheckError(f"expected dynamic batching and max_batch_size >= 2, got max_batch_size {max_batch}")
    return Contract(given["name"], answer["name"], dims[0], dims[1], out_dims[0], max_batch)


def read_contract(clients: dict[str, Any], model: str) -> Contract:
    """The model's configuration as the server normalised it, read over both protocols (they must agree)."""
    configs = {
        "HTTP": clients["HTTP"].get_model_config(model),
        "gRPC": clients["gRPC"].get_model_config(model, as_json=True)["config"],
    }
    contracts = {name: contract_of(config) for name, config in configs.items()}
    if contracts["HTTP"] != contracts["gRPC"]:
        raise CheckError(f"HTTP and gRPC give different configurations: {contracts}")
    return contracts["HTTP"]


def read_reference(path: Path, contract: Contract) -> Reference:
    """predict's JSON, checked to have seen the pixels the server gets (input size, crop fraction 1)."""
    data = json.loads(path.read_text())
    pre = data["preprocessing"]
    if pre["input_size"] != contract.height or contract.height != contract.width or pre["crop_fraction"] != 1:
        raise CheckError(
            f"{path}: predict resized and cropped the images (input size {pre['input_size']}, crop fraction "
            f"{pre['crop_fraction']}), the server gets them as they are ({contract.height}x{contract.width}): "
            "compare a network of crop fraction 1 at the served size, or leave out --reference"
        )
    if data["num_classes"] != contract.classes or data.get("label_mode") == "multi":
        raise CheckError(f"{path}: {data['num_classes']} classes (single-label expected), served {contract.classes}")
    probabilities, top = {}, {}
    for record in data["results"]:
        if record["error"] is not None:
            raise CheckError(f"{path}: predict could not read {record['path']}: {record['error']}")
        image = Path(record["path"]).resolve()
        probabilities[image] = {c["index"]: c["probability"] for c in record["top"]}
        top[image] = [(c["index"], c["label"] if c["label"] is not None else c["name"]) for c in record["top"]]
    return Reference(probabilities, top)


def read_pixels(paths: list[Path], contract: Contract) -> np.ndarray:
    """The images as the contract takes them: decoded RGB, uint8 (N, H, W, 3); each must be H x W already."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        if pixels.shape[:2] != (contract.height, contract.width):
            raise CheckError(
                f"{path} is {pixels.shape[1]}x{pixels.shape[0]}; the model takes {contract.width}x{contract.height} "
                "pixels: resize and crop the images first"
            )
        images.append(pixels)
    return np.stack(images)


def request(module: Any, contract: Contract, pixels: np.ndarray, class_count: int = 0) -> tuple[list, list]:
    """The inputs and requested outputs of one request of `pixels` (n, H, W, 3)."""
    given = module.InferInput(contract.input_name, list(pixels.shape), "UINT8")
    given.set_data_from_numpy(np.ascontiguousarray(pixels))
    return [given], [module.InferRequestedOutput(contract.output_name, class_count=class_count)]


def infer(protocol: str, client: Any, model: str, contract: Contract, pixels: np.ndarray, top_k: int = 0) -> Any:
    """One request of a batch of images; the probabilities, or with `top_k` the "score:index:label" answers."""
    inputs, outputs = request(PROTOCOLS[protocol], contract, pixels, class_count=top_k)
    return client.infer(model, inputs, outputs=outputs).as_numpy(contract.output_name)


def infer_each_at_once(
    clients: dict[str, Any], model: str, contract: Contract, pixels: np.ndarray
) -> dict[str, np.ndarray]:
    """Each image as its own request over each protocol, all sent before any answer is awaited (gRPC's go out at
    once, HTTP's from the client's pool while gRPC's are answered); each protocol's probabilities in image order."""
    name = contract.output_name
    answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    for i, p in enumerate(pixels):
        inputs, outputs = request(grpcclient, contract, p[None])
        clients["gRPC"].async_infer(model, inputs, functools.partial(_put, answers, i), outputs=outputs)
    pending = []
    for p in pixels:
        inputs, outputs = request(httpclient, contract, p[None])
        pending.append(clients["HTTP"].async_infer(model, inputs, outputs=outputs))
    rows = {"HTTP": np.concatenate([p.get_result(timeout=ANSWER_TIMEOUT_S).as_numpy(name) for p in pending])}
    by_grpc: dict[int, np.ndarray] = {}
    for _ in range(len(pixels)):
        try:
            i, result, error = answers.get(timeout=ANSWER_TIMEOUT_S)
        except queue.Empty:
            raise CheckError(f"a gRPC request got no answer within {ANSWER_TIMEOUT_S:.0f} s") from None
        if error is not None:
            raise CheckError(f"gRPC request {i} failed: {error}")
        by_grpc[i] = result.as_numpy(name)
    rows["gRPC"] = np.concatenate([by_grpc[i] for i in range(len(pixels))])
    return rows


def _put(answers: queue.Queue[tuple[int, Any, Any]], i: int, result: Any, error: Any) -> None:
    answers.put((i, result, error))


@dataclass(frozen=True)
class Statistics:
    """A model's statistics, all versions: executions per batch size, inferences (images), executions."""

    sizes: Counter[int]
    inferences: int
    executions: int

    def __sub__(self, other: Statistics) -> Statistics:
        return Statistics(
            self.sizes - other.sizes, self.inferences - other.inferences, self.executions - other.executions
        )


def batch_statistics(client: Any, model: str) -> Statistics:
    """The model's statistics now (get_inference_statistics over HTTP)."""
    sizes: Counter[int] = Counter()
    inferences = executions = 0
    for stats in client.get_inference_statistics(model)["model_stats"]:
        for batch in stats.get("batch_stats", []):
            sizes[int(batch["batch_size"])] += int(batch["compute_infer"]["count"])
        inferences += int(stats["inference_count"])
        executions += int(stats["execution_count"])
    return Statistics(sizes, inferences, executions)


def statistics_counting(client: Any, model: str, inferences: int) -> Statistics:
    """The statistics once they count `inferences` (Triton updates them just after it answers), or as they are
    after STATISTICS_WAIT_S."""
    deadline = time.monotonic() + STATISTICS_WAIT_S
    while (stats := batch_statistics(client, model)).inferences < inferences and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats
