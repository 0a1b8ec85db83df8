"""The serving batcher: a lone image runs at once, images still being decoded join the batch, the wait is
bounded, and each image gets its own output row."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import torch

from inceptionnet.serving.batcher import Batcher

LONG = 600.0  # a wait no test could sit through: a test that paid it would time out


Scenario = Callable[[Batcher, list[int]], Awaitable[None]]  # the batcher, and the sizes of its batches so far


def run(scenario: Scenario, *, max_wait: float) -> None:
    """`scenario` against a batcher of at most 8 images that doubles them, within 30 s."""

    async def main() -> None:
        sizes: list[int] = []
        batcher = Batcher(lambda x: x * 2, max_batch=8, max_wait=max_wait, on_batch=sizes.append)
        batcher.start()
        try:
            await asyncio.wait_for(scenario(batcher, sizes), timeout=30)
        finally:
            await batcher.close()

    asyncio.run(main())


async def request(batcher: Batcher, value: float, *, decoding: float = 0.0) -> torch.Tensor:
    """A request as the server makes one: announced, decoded (`decoding` seconds), queued."""
    with batcher.arriving(1):
        await asyncio.sleep(decoding)
        future = batcher.enqueue(torch.full((3, 2, 2), value))
    return await future


def test_a_lone_image_runs_at_once_without_waiting_for_company() -> None:
    async def scenario(batcher: Batcher, sizes: list[int]) -> None:
        out = await request(batcher, 1.0)
        assert torch.equal(out, torch.full((3, 2, 2), 2.0))
        assert sizes == [1]

    run(scenario, max_wait=LONG)


def test_images_still_being_decoded_join_the_batch() -> None:
    async def scenario(batcher: Batcher, sizes: list[int]) -> None:
        outs = await asyncio.gather(*(request(batcher, float(i), decoding=0.05 * i) for i in range(4)))
        assert [float(o[0, 0, 0]) for o in outs] == [0.0, 2.0, 4.0, 6.0]  # each its own row
        assert sizes == [4]

    run(scenario, max_wait=LONG)


def test_the_wait_for_an_image_that_never_comes_is_bounded() -> None:
    async def scenario(batcher: Batcher, sizes: list[int]) -> None:
        with batcher.arriving(1):  # a request whose image turns out unreadable: announced, never queued
            out = await request(batcher, 1.0)
        assert torch.equal(out, torch.full((3, 2, 2), 2.0))
        assert sizes == [1]

    run(scenario, max_wait=0.2)


def test_a_batch_never_exceeds_max_batch() -> None:
    async def scenario(batcher: Batcher, sizes: list[int]) -> None:
        outs = await asyncio.gather(*(request(batcher, float(i)) for i in range(20)))
        assert [float(o[0, 0, 0]) for o in outs] == [2.0 * i for i in range(20)]
        assert sum(sizes) == 20 and max(sizes) <= 8

    run(scenario, max_wait=0.01)
