"""Dynamic batching: requests that arrive close together share one forward of the network.

Each image is queued with a future. The loop takes the first waiting image and every image queued behind
it, up to `max_batch`. It waits for more only while other images are on their way (`arriving`: received
and being decoded), and at most `max_wait` seconds since that first image: a lone request runs at once,
without paying the wait, while under load the requests still being decoded join the batch. It runs one
forward in a worker thread (the event loop keeps accepting requests meanwhile) and resolves each future
with its own row. One
forward runs at a time: the engines use every core for one batch already, so two at once would only
compete. `close()` lets the loop finish every image queued before it returns.

The queue is bounded: `arriving` refuses (QueueFull) images that would take the queued and arriving
images past `max_queue`, so that under overload requests are answered at once instead of waiting
longer and longer. An image whose future was cancelled (its client went away) is dropped before the
forward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]
_CLOSE = None  # queued by close(): the loop ends once everything queued before it is answered


class QueueFull(Exception):
    """More images than the queue's bound: the request is refused, nothing of it queued."""


class Batcher:
    """Collects single images into batches for `forward` (a batch in, one output row per image out)."""

    def __init__(
        self,
        forward: Forward,
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int = 1 << 30,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait < 0 or max_queue < 1:
            raise ValueError(
                f"a batch needs at least 1 image, a wait of 0 s or more and a queue of 1 or more, got "
                f"{max_batch}, {max_wait}, {max_queue}"
            )
        self.forward, self.max_batch, self.max_wait, self.on_batch = forward, max_batch, max_wait, on_batch
        self.max_queue = max_queue
        self._queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future[torch.Tensor]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._arriving = 0  # images received and being decoded, not yet submitted

    @contextmanager
    def arriving(self, images: int) -> Iterator[None]:
        """Announce `images` about to be submitted (while they are decoded), so that a batch waits for them;
        QueueFull when they would take the queue past `max_queue`."""
        if self.queued + images > self.max_queue:
            raise QueueFull(f"{self.queued} images wait for the network, and {images} more would pass {self.max_queue}")
        self._arriving += images
        try:
            yield
        finally:
            self._arriving -= images

    @property
    def queued(self) -> int:
        """Images queued or being decoded for the queue (the batch in the forward not counted)."""
        return self._queue.qsize() + self._arriving

    def start(self) -> None:
        """Start the loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Answer every queued image, then stop the loop."""
        if self._task is not None:
            self._queue.put_nowait(_CLOSE)
            await self._task
            self._task = None

    async def submit(self, image: torch.Tensor) -> torch.Tensor:
        """The network's output for one prepared image (C, H, W), computed in a batch with its neighbours."""
        return await self.enqueue(image)

    def enqueue(self, image: torch.Tensor) -> asyncio.Future[torch.Tensor]:
        """Queue one prepared image at once; the future of its output row."""
        if self._task is None:
            raise RuntimeError("the batcher is not running; start() it inside the server's event loop")
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((image, future))
        return future

    async def _loop(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is _CLOSE:
                return
            batch = [first]
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while len(batch) < self.max_batch:
                left = deadline - asyncio.get_running_loop().time()
                waits = left > 0 and self._queue.empty() and self._arriving > 0
                try:
                    item = await asyncio.wait_for(self._queue.get(), left) if waits else self._queue.get_nowait()
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if item is _CLOSE:
                    closing = True
                    break
                batch.append(item)
            await self._run(batch)

    async def _run(self, batch: list[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]]) -> None:
        batch = [(image, future) for image, future in batch if not future.done()]  # cancelled: the client left
        if not batch:
            return
        try:
            out = await asyncio.to_thread(self.forward, torch.stack([image for image, _ in batch]))
        except Exception as err:  # every waiting request gets the failure; the loop serves the next batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        for (_, future), row in zip(batch, out, strict=True):
            if not future.done():  # a client that went away cancelled its future
                future.set_result(row)
