"""The check itself: configuration, probabilities, top-k classification and dynamic batching of one model.

1. The configuration, as the server normalised it, over HTTP and gRPC (client.contract_of).
2. The images in requests of up to max_batch_size, over both protocols: the probabilities against the
   reference (predict's, or without one the first answer), and the classification extension's top-k
   ("score:index:label", `class_count`) against the reference's top-k classes and labels.
3. `rounds` times, each image as its own request, all sent at once over both protocols, so that the
   dynamic batcher can group them: the probabilities again, and the model's statistics before and
   after, which must show executions of batches of more than one (single-image) request. Whether the
   batcher finds requests waiting depends on timing (the model's queue delay is 100 us), so further
   rounds are sent, up to `max_rounds`, while no such batch shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tritoncheck.client import (
    CheckError,
    Contract,
    Reference,
    Statistics,
    batch_statistics,
    infer,
    infer_each_at_once,
    read_contract,
    read_pixels,
    read_reference,
    statistics_counting,
)

SCORE_DIGITS = 1e-6  # the classification extension prints scores with six decimals


@dataclass
class Comparison:
    """What each answer is compared with: probabilities (N, C), NaN where unknown, and the top classes."""

    probabilities: np.ndarray
    top: list[list[tuple[int, str | None]]]
    max_diff: float
    largest: float = 0.0  # the largest absolute difference seen
    compared: int = 0  # answers (image x request) compared
    failures: list[str] = field(default_factory=list)

    def compare(self, what: str, rows: np.ndarray) -> None:
        known = ~np.isnan(self.probabilities)
        diff = float(np.abs(rows - self.probabilities)[known].max())
        self.largest, self.compared = max(self.largest, diff), self.compared + len(rows)
        if diff > self.max_diff:
            self.failures.append(f"{what}: probabilities differ by up to {diff:.3g} (> {self.max_diff:g})")

    def compare_top(self, what: str, answers: np.ndarray, k: int) -> None:
        """Each image's `k` "score:index:label" answers against the expected top classes, in order (classes
        whose probabilities are within max_diff may swap places)."""
        for i, (row, top) in enumerate(zip(answers, self.top, strict=True)):
            got = [_parse(a) for a in row]
            if len(got) != k:
                self.failures.append(f"{what}: image {i} answered {len(got)} classes, not {k}")
                continue
            for (score, index, label), (want, want_label) in zip(got, top, strict=False):
                p = self.probabilities[i]
                swapped = index != want and abs(p[index] - p[want]) > self.max_diff
                if swapped or (want_label is not None and index == want and label != want_label):
                    self.failures.append(f"{what}: image {i} answered {got}, expected {top[: len(got)]}")
                    break
                if abs(score - p[index]) > self.max_diff + SCORE_DIGITS:
                    self.failures.append(f"{what}: image {i} class {index} score {score}, expected {p[index]:.6f}")
                    break


def _parse(answer: bytes) -> tuple[float, int, str]:
    score, index, label = answer.decode().split(":", 2)
    return float(score), int(index), label


def comparison_of(reference: Reference | None, images: list[Path], first: np.ndarray, max_diff: float) -> Comparison:
    """From predict's JSON; without one, from the first answer (the check then compares the server with itself)."""
    if reference is None:
        top = [[(int(c), None) for c in np.argsort(-row, kind="stable")] for row in first]
        return Comparison(first.copy(), top, max_diff)
    probabilities = np.full_like(first, np.nan)
    top = []
    for i, path in enumerate(images):
        known = reference.probabilities.get(path.resolve())
        if known is None:
            raise CheckError(f"the reference has no result for {path}; predict the same image files")
        for index, p in known.items():
            probabilities[i, index] = p
        top.append(list(reference.top[path.resolve()]))
    return Comparison(probabilities, top, max_diff)


def batched(protocol: str, client: Any, model: str, contract: Contract, pixels: np.ndarray, top_k: int = 0) -> Any:
    """All the images in requests of up to max_batch_size each; the answers in image order."""
    step = contract.max_batch
    parts = [infer(protocol, client, model, contract, pixels[s : s + step], top_k) for s in range(0, len(pixels), step)]
    return np.concatenate(parts)


def run_check(
    *,
    http: str,
    grpc: str,
    model: str,
    images: list[Path],
    reference: Path | None,
    top_k: int,
    max_diff: float,
    rounds: int,
    max_rounds: int,
) -> Comparison:
    """Run the checks (see the module's docstring), printing what each shows; the outcome, failures listed."""
    clients = {
        "HTTP": httpclient.InferenceServerClient(http, concurrency=len(images)),
        "gRPC": grpcclient.InferenceServerClient(grpc),
    }
    for name, client in clients.items():
        if not client.is_model_ready(model):
            raise CheckError(f"{model} is not ready over {name} ({http if name == 'HTTP' else grpc})")
    contract = read_contract(clients, model)
    print(
        f"config (HTTP and gRPC agree): {contract.input_name} UINT8 [{contract.height}, {contract.width}, 3] -> "
        f"{contract.output_name} FP32 [{contract.classes}] with labels, max batch {contract.max_batch}, "
        "dynamic batching"
    )
    pixels = read_pixels(images, contract)
    start = batch_statistics(clients["HTTP"], model)
    first = batched("HTTP", clients["HTTP"], model, contract, pixels)
    outcome = comparison_of(read_reference(reference, contract) if reference else None, images, first, max_diff)
    k = min(top_k, contract.classes, *(len(t) for t in outcome.top))
    for protocol, client in clients.items():
        outcome.compare(f"{protocol}, batches", batched(protocol, client, model, contract, pixels))
        outcome.compare_top(f"{protocol}, top-{k}", batched(protocol, client, model, contract, pixels, k), k)
    print(f"{len(images)} images in batches of up to {contract.max_batch}: probabilities and top-{k} labels checked")
    sent = len(pixels) * (1 + 2 * len(clients))  # the first answer, then probabilities and top-k per protocol
    before = statistics_counting(clients["HTTP"], model, start.inferences + sent)
    single_requests(outcome, clients, model, contract, pixels, before=before, rounds=rounds, max_rounds=max_rounds)
    return outcome


def single_requests(
    outcome: Comparison,
    clients: dict[str, Any],
    model: str,
    contract: Contract,
    pixels: np.ndarray,
    *,
    before: Statistics,
    rounds: int,
    max_rounds: int,
) -> None:
    """Rounds of each image as its own request over both protocols at once (step 3 of the module's docstring)."""
    change, done, requests = Statistics(Counter(), 0, 0), 0, 0
    while done < rounds or (not _grouped(change) and done < max_rounds):
        for protocol, rows in infer_each_at_once(clients, model, contract, pixels).items():
            outcome.compare(f"{protocol}, one request each", rows)
        done += 1
        requests = done * len(clients) * len(pixels)
        change = statistics_counting(clients["HTTP"], model, before.inferences + requests) - before
    shown = ", ".join(f"{n} x {size}" for size, n in sorted(change.sizes.items()))
    print(
        f"{requests} single-image requests ({done} round{'s' * (done != 1)} of {len(pixels)} over HTTP and "
        f"{len(pixels)} over gRPC, all at once): {change.inferences} inferences in {change.executions} executions; "
        f"executions x batch size: {shown}"
    )
    if change.inferences != requests:
        outcome.failures.append(f"the statistics count {change.inferences} inferences for {requests} requests")
    if not _grouped(change):
        outcome.failures.append("no execution ran more than one request: dynamic batching formed no batch")


def _grouped(change: Statistics) -> int:
    """Executions of more than one request."""
    return sum(n for size, n in change.sizes.items() if size > 1)
