"""What an operator can set when starting the HTTP server (``vistext serve``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass
class ServerSettings:
    """Server limits and options. Uploads larger than ``max_upload_bytes`` get 413, images with more than
    ``max_pixels`` pixels get 413, a request that runs longer than ``request_timeout`` seconds gets 504."""

    db: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # when set, every API request needs ``Authorization: Bearer <token>``
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    request_timeout: float = 30.0
    max_k: int = 100
    max_offset: int = 10_000
    max_vocab: int = 1000
    max_tag_sets: int = 50
    upload_concurrency: int = 2  # model runs on uploads at once; the rest wait (the CPU is the limit anyway)
    max_connections: int = 128  # beyond this uvicorn answers 503 instead of queueing without bound
    captions: str | None = None  # caption bank (FORMAT:PATH or text file) for /api/caption and the bot
    taggers: dict[str, str] = field(default_factory=dict)  # name -> trained tagger dir, chosen by name only
    map_method: str = "tsne"
    warm_up: bool = True  # load the text model at start-up when the index has text embeddings

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS
