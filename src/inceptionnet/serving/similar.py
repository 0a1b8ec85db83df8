"""`serve --index FILE.parquet`: POST /v1/similar (the nearest indexed images of each uploaded one) and
GET /v1/indexed/{row} (a thumbnail of one indexed image, by its row in the embeddings file).

The uploads are read and prepared as /v1/predict reads them (the same limits), and embedded by the served
network cut before its classifier, through a batcher of their own. A thumbnail is only ever one of the
indexed files, chosen by its row number: no client-given path is opened. Rows whose image is not a file
(a shard member, a dataset row) or whose file is gone answer 404. Both routes sit behind the API key and
the concurrency limit like every /v1 route.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

import torch

from inceptionnet.data import UNREADABLE
from inceptionnet.data.images import read_image
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.retrieval.search import DEFAULT_TOP_K, Gallery
from inceptionnet.serving.batcher import Batcher, QueueFull
from inceptionnet.serving.handlers import Handlers, Reply, endpoint, json_reply
from inceptionnet.serving.requests import Upload, unless_gone, uploads
from inceptionnet.serving.service import Rejected

MAX_TOP_K = 100
THUMBNAIL = 160  # px, the longer side
THUMBNAIL_MAX_PIXELS = 40_000_000  # an indexed file is read within the server's default image bound


class Similarity:
    """The served network's features (`forward`, what the batcher runs), the gallery and its thumbnails."""

    def __init__(
        self, gallery: Gallery, features: DescribedNetwork, *, device: torch.device, run_size: Callable[[int], int]
    ) -> None:
        gallery.check_network(features)
        self.gallery, self.features, self.device, self.run_size = gallery, features.eval(), device, run_size

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised feature vectors (N, D) of prepared images, padded to the classifier's batch sizes."""
        n = len(batch)
        if self.run_size(n) > n:
            batch = torch.cat([batch, batch.new_zeros(self.run_size(n) - n, *batch.shape[1:])])
        with torch.inference_mode():
            v = self.features(batch.to(self.device)).float().cpu()[:n]
        return torch.nn.functional.normalize(v, dim=1)

    def warm_up(self, sizes: list[int]) -> None:
        size = self.features.preprocessing.input_size
        for n in sizes:
            self.forward(torch.zeros(n, self.features.in_chans, size, size))

    def answer(self, vector: torch.Tensor, name: str, k: int) -> dict[str, Any]:
        (found,) = self.gallery.nearest(vector[None].numpy(), k)
        neighbours = [_neighbour(n.row, n.path, n.label, n.similarity) for n in found]
        return {"file": name, "neighbours": neighbours}

    def file_of(self, given: str) -> Path:
        """The file of row `given` (a row number of the index); Rejected (404) for anything else."""
        rows = len(self.gallery)
        if not (given.isascii() and given.isdigit()) or int(given) >= rows:
            raise Rejected(404, f"no indexed image {given[:40]!r}: rows are numbered 0 to {rows - 1}")
        stored = Path(self.gallery.paths[int(given)])
        candidates = [stored] if stored.is_absolute() else [stored, self.gallery.path.parent / stored]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise Rejected(404, f"indexed image {given} is not a file on this server (gone, or not a file)")
        return found

    def thumbnail(self, given: str) -> bytes:
        """A JPEG of the indexed image of row `given`, at most THUMBNAIL px on its longer side."""
        path = self.file_of(given)
        try:
            picture = read_image(path, max_pixels=THUMBNAIL_MAX_PIXELS)
        except UNREADABLE:
            raise Rejected(404, f"indexed image {given} cannot be read as an image any more") from None
        picture.thumbnail((THUMBNAIL, THUMBNAIL))
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=85)
        return out.getvalue()


def _neighbour(row: int, path: str, label: Any, similarity: float) -> dict[str, Any]:
    """One indexed image in an answer: its row, its file's name (never the path on this server), its label, its
    similarity and where its thumbnail is."""
    return {
        "row": row,
        "name": PurePath(path).name,
        "label": label,
        "similarity": similarity,
        "thumbnail": f"/v1/indexed/{row}",
    }


class SimilarRoutes:
    """The two routes' handlers, over the server's Handlers (limits, key, metrics) and their own batcher."""

    def __init__(self, h: Handlers, similarity: Similarity, batcher: Batcher) -> None:
        self.h, self.similarity, self.batcher = h, similarity, batcher

    async def similar(self, request: Any) -> Reply:
        """The `top_k` (query parameter, default 10) nearest indexed images of each uploaded image."""
        k = _top_k(request.query_params.get("top_k"))
        files = await uploads(request, self.h.limits)
        vectors = await self.vectors(files, client=request)
        results = [self.similarity.answer(v, name, k) for (name, _), v in zip(files, vectors, strict=True)]
        return json_reply({"index": self.similarity.gallery.path.name, "results": results})

    async def vectors(self, files: list[Upload], *, client: Any) -> list[torch.Tensor]:
        """The uploads' vectors through this route's batcher, within the limits /v1/predict meets (files per
        request, their pixels, the queue), dropped if the client leaves."""
        limits = self.h.limits
        if len(files) > limits.max_files:
            raise Rejected(413, f"{len(files)} images in one request, above --max-files {limits.max_files}")
        try:
            with self.batcher.arriving(len(files)):
                inputs = await asyncio.to_thread(self.h.prepare, files)
                futures = [self.batcher.enqueue(x) for x in inputs]
        except QueueFull as err:
            raise Rejected(503, f"the server is busy ({err}); retry later", reason="queue") from None
        return await unless_gone(client, futures)

    async def indexed(self, request: Any) -> Reply:
        data = await asyncio.to_thread(self.similarity.thumbnail, request.path_params["row"])
        return 200, data, "image/jpeg", {"Cache-Control": "private, max-age=3600"}

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        h = self.h
        return [
            Route("/v1/similar", endpoint(h, "/v1/similar", self.similar), methods=["POST"]),
            Route("/v1/indexed/{row}", endpoint(h, "/v1/indexed", self.indexed), methods=["GET"]),
        ]


def _top_k(given: str | None) -> int:
    if given is None:
        return DEFAULT_TOP_K
    if not (given.isascii() and given.isdigit()) or not 1 <= int(given) <= MAX_TOP_K:
        raise Rejected(400, f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {given[:20]!r}")
    return int(given)


def similar_routes(
    h: Handlers, similarity: Similarity | None, batchers: list[Batcher], *, max_batch: int, max_wait: float
) -> list[Any]:
    """The routes of /v1/similar and /v1/indexed: with `similarity`, over a batcher of their own (added to
    `batchers`, which the application starts and closes), else answering 404."""
    if similarity is None:
        return no_index_routes(h)
    limits, metrics = h.limits, h.metrics
    batcher = Batcher(similarity.forward, max_batch=max_batch, max_wait=max_wait, max_queue=limits.max_queue,
                      on_batch=metrics.batch)  # fmt: skip
    batchers.append(batcher)
    return SimilarRoutes(h, similarity, batcher).routes()


def no_index_routes(h: Handlers) -> list[Any]:
    """Without --index, the two routes answer 404 saying how to start the server with one."""
    from starlette.routing import Route

    async def absent(request: Any) -> Reply:
        raise Rejected(404, "this server has no index of images; start it with --index FILE.parquet (of embed)")

    return [
        Route("/v1/similar", endpoint(h, "/v1/similar", absent), methods=["POST"]),
        Route("/v1/indexed/{row}", endpoint(h, "/v1/indexed", absent), methods=["GET"]),
    ]
