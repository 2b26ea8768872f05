"""What an operator can set when starting the HTTP server (``vistext serve``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vistext.errors import UsageError
from vistext.service.inputs import MAX_PIXELS

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_IMAGE_ID = 2**63 - 1  # catalogue ids are SQLite integers; anything larger cannot name an image


@dataclass
class ServerSettings:
    """Server limits and options; docs/serving.md ("Limits") says what a client sees at each.

    Uploads larger than ``max_upload_bytes`` and images with more than ``max_pixels`` pixels get 413; a request
    that runs longer than ``request_timeout`` seconds gets 504. Connections are not limited: requests in
    flight are (``max_in_flight``; up to ``max_queued`` more wait for a slot, beyond that 503), and a client
    that does not send its request head within ``header_timeout`` or its body within ``body_timeout`` seconds
    is disconnected (408), so idle or slow connections cannot starve anyone. A request naming another ``Host:``
    than a loopback name, the bound address or one of ``allowed_hosts`` gets 421 (DNS rebinding).
    """

    db: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # when set, every API request needs ``Authorization: Bearer <token>``
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    request_timeout: float = 30.0
    job_deadline: float = 300.0  # seconds a collection-wide job (topics, duplicates, map) runs before abandoned
    max_k: int = 100
    max_offset: int = 10_000
    max_vocab: int = 200  # open-vocabulary words per /api/tag request: each costs a text-model pass (~15 ms)
    max_tag_sets: int = 50
    max_topics: int = 20  # /api/topics?n=: an NMF fit grows with n, and each new n is a fresh fit
    upload_concurrency: int = 2  # model runs on uploads at once (the CPU is the limit anyway)
    max_waiting_work: int = 8  # expensive requests (uploads, topics) waiting for a worker; beyond: 503
    max_in_flight: int = 64  # requests handled at once; the rest wait in a queue (no connection limit)
    max_queued: int = 1000  # requests waiting for an in-flight slot; beyond: 503 at once
    header_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 30.0  # seconds to send the whole body, and to read each part of the answer
    keep_alive_timeout: int = 5  # seconds an idle keep-alive connection stays open
    max_head_bytes: int = 64 * 1024  # request line + headers (a 1 MB query string gets 431)
    captions: str | None = None  # caption bank (FORMAT:PATH or text file) for /api/caption; None: composed
    taggers: dict[str, str] = field(default_factory=dict)  # name -> trained tagger dir, chosen by name only
    map_method: str = "tsne"
    warm_up: bool = True  # load the text model at start-up when the index has text embeddings
    allowed_hosts: frozenset[str] = frozenset()  # Host names answered besides loopback and the bound address
    watch: str | Path | None = None  # a folder to index, then keep current while serving (server/watching.py)

    @property
    def catalogue(self) -> str | Path | None:
        """The catalogue served: ``db``; else the watched folder's own (``DIR/.vistext/``); else the default one."""
        return self.db if self.db is not None or self.watch is None else self.watch

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def check(self) -> None:
        """Refuse a server anyone on the network could use: a non-loopback address needs a token."""
        if not self.loopback and not self.token:
            raise UsageError(
                f"--host {self.host} without --token: anyone who can reach it could read the catalogue and the "
                "photos; pass --token (or --token-env), or serve on 127.0.0.1"
            )
