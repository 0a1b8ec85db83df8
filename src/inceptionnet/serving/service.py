"""The model side of the server, with no web framework: uploads to tensors, outputs to JSON, Grad-CAM.

An upload is decoded as `read_image` decodes a file (whole, EXIF orientation applied, RGB) and prepared
with the network's own preprocessing (its card), as `inceptionnet predict` prepares it; the outputs are
the same probabilities: softmax for a single-label network, and for a multi-label one
(`card.label_mode == "multi"`) a sigmoid per class with the labels at or above the card's thresholds
(0.5 without). A card with a temperature divides the logits by it before the softmax; a card with an
unknown-image rule also scores each image against its threshold, for the requests that ask (`reject_unknown`).
Before decoding, the header's size is checked against `max_pixels`: a small file can
claim a huge image (a decompression bomb), and decoding it would take the server's memory.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from inceptionnet.card import ModelCard
from inceptionnet.data import UNREADABLE, eval_transform
from inceptionnet.data.images import ImageRefused, open_image, read_image_bytes
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.extras import MissingExtra
from inceptionnet.inference.explain import explain
from inceptionnet.inference.predict import checked_top_k, class_json, class_labels, classes_of, output_probabilities
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.outputs import card_unknown_scores
from inceptionnet.serving.limits import MAX_PIXELS

T = TypeVar("T")


class Rejected(Exception):
    """A request the server refuses: `status` (4xx, or 503: busy, retry later) and a message naming the
    problem. `reason`: the limit that refused it, counted in the metrics (metrics.REFUSALS); `close`: the
    request's body may be partly unread, so the connection is closed after the answer."""

    def __init__(self, status: int, message: str, *, reason: str | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.reason, self.close = status, reason, close


class Classifier:
    """A network ready for inference, with what turns uploads into its inputs and its outputs into JSON."""

    def __init__(
        self,
        model: DescribedNetwork,
        *,
        device: torch.device,
        top_k: int | None = None,
        max_pixels: int = MAX_PIXELS,
        max_batch: int = 16,
    ) -> None:
        self.model, self.device, self.max_pixels, self.max_batch = model.eval(), device, max_pixels, max_batch
        # OpenVINO compiles each batch size it meets: batches padded to powers of two keep them to a few
        self.pads = getattr(model, "engine", None) == "openvino"
        self.card: ModelCard = model.card
        self.top_k = checked_top_k(self.card, top_k)
        self.labels = class_labels(self.card)
        self.transform = eval_transform(model.preprocessing)

    def decode(self, data: bytes, name: str) -> Image.Image:
        """The upload `name` as an upright RGB picture; Rejected (400, 413) when it is not one or too large."""
        return self.reading(data, name, lambda: read_image_bytes(data, max_pixels=self.max_pixels))

    def pixels(self, data: bytes, name: str) -> int:
        """How many pixels the upload `name` says it has (its header read, nothing decoded); Rejected as decode."""

        def header() -> int:
            with open_image(io.BytesIO(data), max_pixels=self.max_pixels) as image:
                return image.width * image.height

        return self.reading(data, name, header)

    def reading(self, data: bytes, name: str, read: Callable[[], T]) -> T:
        """`read()` of the upload `name`, with the reader's refusals as the client's errors (400, 413)."""
        if not data:
            raise Rejected(400, f"{name} is empty; send the bytes of a JPEG, PNG, WebP, ... image")
        try:
            return read()
        except ImageRefused as err:
            if err.too_large:
                raise Rejected(413, f"{name} is {err}, this server's limit; send a smaller image") from None
            raise Rejected(400, f"{name} is {err}; send a JPEG, PNG, WebP, GIF, BMP or TIFF image") from None
        except UNREADABLE as err:
            raise Rejected(400, f"{name} is not a readable image ({type(err).__name__}: {err})") from None

    def prepare(self, data: bytes, name: str) -> torch.Tensor:
        """The network's input (C, H, W) for one upload."""
        return self.transform(self.decode(data, name))

    def prepare_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """The network's inputs (N, 3, S, S) of uint8 RGB pixels (N, S, S, 3) already decoded, resized and cropped
        (the input of `export --with-preprocessing`): scaled to [0, 1] and normalised as the card says."""
        pre = self.model.preprocessing
        images = TF.to_dtype(pixels.permute(0, 3, 1, 2), torch.float32, scale=True)
        return TF.normalize(images, mean=list(pre.mean), std=list(pre.std))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, classes) of a batch of prepared images: what the batcher runs in a worker thread.
        With an unknown-image rule in the card, each row also ends with the image's score (`split` parts them)."""
        n = len(batch)
        if self.pads and self.run_size(n) > n:
            batch = torch.cat([batch, batch.new_zeros(self.run_size(n) - n, *batch.shape[1:])])
        with torch.inference_mode():
            logits = self.model(batch.to(self.device)).float().cpu()[:n]
        probs = output_probabilities(logits, self.card)
        if self.card.unknown is None:
            return probs
        return torch.cat([probs, card_unknown_scores(logits, self.card)[:, None]], dim=1)

    def split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The probabilities (N, classes) and unknown-image scores (N,) of `forward`'s rows (None: no rule)."""
        n = self.card.num_classes
        return outputs[:, :n], outputs[:, n] if outputs.shape[1] > n else None

    def run_size(self, n: int) -> int:
        """The batch size `n` images run at: the next power of two (at most max_batch) when padding, else n."""
        return min(1 << (n - 1).bit_length(), self.max_batch) if self.pads else n

    def warm_up(self) -> None:
        """One forward at every batch size the batcher can run: OpenVINO compiles each shape at its first
        call (hundreds of ms to seconds), which would otherwise land on the first requests of that size."""
        size = self.model.preprocessing.input_size
        for n in sorted({self.run_size(n) for n in range(1, self.max_batch + 1)}):
            self.forward(torch.zeros(n, self.card.in_chans, size, size))

    def result(self, probs: torch.Tensor, name: str, *, unknown_score: float | None = None) -> dict[str, Any]:
        """One image's answer: the top-k classes (single-label), or the labels above threshold and every
        probability (multi-label). With `unknown_score` (asked for), also whether it is below the card's threshold:
        "unknown": true, as `predict --reject-unknown` answers."""
        top, every = classes_of(probs, self.card, self.labels, k=self.top_k)  # as predict, which --json writes
        if every is None:
            answer: dict[str, Any] = {"file": name, "top": [class_json(t) for t in top]}
            if unknown_score is not None and self.card.unknown is not None:
                answer.update(unknown=unknown_score < self.card.unknown.threshold, unknown_score=unknown_score)
            return answer
        return {"file": name, "labels": [class_json(t) for t in top], "probabilities": [class_json(t) for t in every]}


EXPLAIN_MIN_SIZE = 150  # the heat map has one cell per 32 px: a 75 px network's own view would be one cell


class Explainer:
    """Grad-CAM overlays for the page, on the PyTorch network of the same weights as the predictions (given
    at start: the engines have no gradients), on the server's device. Its own thread runs one request at a
    time (the hooks are shared), with `queue` more admitted to wait; a request beyond them is refused (429,
    retry later), so that a flood of explains never holds the threads that decode predictions. The view is
    the network's own size, at least EXPLAIN_MIN_SIZE (docs/explain.md)."""

    def __init__(self, net: InceptionNetwork, *, device: torch.device, queue: int = 2) -> None:
        self.net, self.device, self.capacity = net.to(device).eval(), device, 1 + queue
        self.admitted = 0  # running or waiting; changed on the event loop only
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")

    @contextmanager
    def admit(self) -> Iterator[None]:
        """A place for one request (held while its upload is read and explained); Rejected (429) when full."""
        if self.admitted >= self.capacity:
            raise Rejected(
                429,
                f"{self.admitted} Grad-CAM requests are running or waiting, this server's limit; retry later",
                reason="explain_busy",
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def overlay(self, picture: Image.Image, name: str, target: str | None = None) -> dict[str, Any]:
        """The overlay of class `target` (an index, label or name; None: the top class) as a base64 PNG, with
        the class it shows, computed on the explainer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._overlay, picture, name, target)

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def _overlay(self, picture: Image.Image, name: str, target: str | None) -> dict[str, Any]:
        size = max(self.net.preprocessing.input_size, EXPLAIN_MIN_SIZE)
        try:
            (e,) = explain(self.net, [picture], target=target, top_k=1, input_size=size, device=self.device)
        except ValueError as err:  # an unknown class, or the extra is missing
            status = 501 if isinstance(err, MissingExtra) else 400
            raise Rejected(status, str(err)) from None
        png = io.BytesIO()
        Image.fromarray(e.overlay()).save(png, format="PNG")
        return {
            "file": name,
            "index": e.index,
            "name": e.name,
            "probability": e.probability,
            "overlay_png": base64.b64encode(png.getvalue()).decode("ascii"),
        }
