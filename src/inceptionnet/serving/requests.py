"""Reading a request within the server's limits, and waiting for its answer only while its client is there.

`uploads` gives the (name, bytes) of each image of a request: the `file` fields of a multipart form, or
the body of an image/* request. The body is read whole before anything is parsed, within `max_upload`
bytes and `body_timeout` seconds: a client that sends too much or too slowly is refused (413, 408)
and its connection closed. `pixel_budget` reads the images' headers (nothing decoded) and refuses a
request whose images together pass `max_request_pixels`. `unless_gone` waits for the batcher's
answers, and cancels them if the client disconnects first: the batcher drops cancelled images before
their forward, so work nobody will read is not done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from inceptionnet.serving.limits import Limits
from inceptionnet.serving.service import Classifier, Rejected

Upload = tuple[str, bytes]  # the name the client gave (or "image", "file N") and the encoded bytes


class ClientGone(Exception):
    """The client disconnected before its answer was computed; nothing is sent."""


async def uploads(request: Any, limits: Limits) -> list[Upload]:
    """The images of `request` (a Starlette Request), as sent; Rejected (4xx) naming what is wrong."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind == "multipart/form-data" or kind.startswith("image/") or kind == "application/octet-stream"):
        raise Rejected(
            415,
            f"unsupported Content-Type {kind or '(none)'}: send multipart/form-data with "
            "the image in the field 'file', or the image's bytes with Content-Type image/*",
        )
    data = await body(request, limits)
    if kind != "multipart/form-data":
        return [("image", data)]

    async def replay() -> dict[str, Any]:  # the form parser reads the body already read (and size-checked)
        return {"type": "http.request", "body": data, "more_body": False}

    try:
        form = await type(request)(request.scope, replay).form(
            max_files=limits.max_files, max_part_size=limits.max_upload
        )
    except Exception as err:  # the parser's errors are the client's malformed form
        if "too many files" in str(err).lower():
            message = f"more than {limits.max_files} images in one request (--max-files); send fewer"
            raise Rejected(413, message) from None
        raise Rejected(400, f"not a readable multipart form ({err})") from None
    try:
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise Rejected(400, "no image in the form: send each image in a multipart field named 'file'")
        return [(f.filename or f"file {i}", await f.read()) for i, f in enumerate(files)]
    finally:
        await form.close()  # the parts' temporary files


async def body(request: Any, limits: Limits) -> bytes:
    """The request body, refused (413) as soon as its declared or received size passes the limit, and (408)
    when it has not all arrived within the limit's time."""
    limit = f"this server's limit of {limits.max_upload / 2**20:g} MB (--max-upload-mb)"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_upload:
        message = f"the upload is {int(declared) / 2**20:.1f} MB, above {limit}; send a smaller file"
        raise Rejected(413, message, close=True)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_upload:
                    raise Rejected(413, f"the upload passed {limit}; send a smaller file", close=True)
                chunks.append(chunk)
    except TimeoutError:
        raise Rejected(
            408,
            f"the body did not arrive within {limits.body_timeout:g} s (--body-timeout); send it at once",
            reason="body_timeout",
            close=True,
        ) from None
    return b"".join(chunks)


def pixel_budget(classifier: Classifier, files: list[Upload], limits: Limits) -> None:
    """Refuse (413) a request whose images together have more pixels than `max_request_pixels`, from their
    headers, before any is decoded (each image alone is refused above `max_pixels` here too)."""
    total = sum(classifier.pixels(data, name) for name, data in files)
    if total > limits.max_request_pixels:
        raise Rejected(
            413,
            f"the {len(files)} images of this request have {total / 1e6:.3g} MP together, above this server's "
            f"limit of {limits.max_request_pixels / 1e6:g} MP per request (--max-request-megapixels); "
            "send them in several requests",
        )


async def unless_gone(request: Any, futures: list[asyncio.Future[torch.Tensor]]) -> list[torch.Tensor]:
    """The results of `futures`, or ClientGone (the futures cancelled) if the client disconnects first."""
    answers = asyncio.gather(*futures)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({answers, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answers in done:
        return list(answers.result())
    answers.cancel()  # cancels every future: the batcher drops them before the forward
    raise ClientGone


async def _disconnect(request: Any) -> None:
    """Returns when the client has gone (the body was read whole before: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
