"""What the server accepts, in one value: every bound a client's request meets, with its default.

docs/serving.md's security section lists them with what each one bounds. A request past a bound is refused
at once, before the work the bound protects: a body past `max_upload` is not read further, an image whose
header gives more than `max_pixels` is not decoded, a request whose images together pass
`max_request_pixels` decodes none of them, and a request that would overfill the queue or the explain
executor is answered 503 or 429 with `Retry-After` instead of waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PIXELS = 40_000_000  # 40 MP: a 7300 x 5500 photo; about 120 MB once decoded to RGB
MAX_REQUEST_PIXELS = 100_000_000  # every image of one request together: the decoding work one request may ask


@dataclass(frozen=True)
class Limits:
    """The server's bounds (sizes in bytes and pixels, times in seconds)."""

    max_upload: int = 20 * 2**20  # request body
    max_files: int = 64  # images in one request
    max_pixels: int = MAX_PIXELS  # one image, read from its header before decoding
    max_request_pixels: int = MAX_REQUEST_PIXELS  # all images of one request, from their headers
    max_queue: int = 256  # images queued for the network, beyond which a request is answered 503
    max_concurrent: int = 128  # requests being handled at once (the health and metrics endpoints aside)
    explain_queue: int = 2  # Grad-CAM requests waiting behind the one running (429 beyond)
    max_connections: int = 512  # open connections, idle ones included (503 and closed beyond)
    header_timeout: float = 10.0  # from a connection's first byte (or its previous answer) to a whole header
    body_timeout: float = 60.0  # from the header to the whole body (408 and closed after it)
    retry_after: int = 1  # seconds, in the Retry-After header of a 503 or 429

    def __post_init__(self) -> None:
        sizes = {name: value for name, value in vars(self).items() if name != "explain_queue"}
        if any(value <= 0 for value in sizes.values()) or self.explain_queue < 0:
            raise ValueError(f"every server limit must be above 0 (the explain queue 0 or more), got {self}")
        if self.max_request_pixels < self.max_pixels:
            raise ValueError(
                f"the pixels of one request ({self.max_request_pixels / 1e6:g} MP) must allow one image of "
                f"the largest size ({self.max_pixels / 1e6:g} MP); raise --max-request-megapixels"
            )
