"""Loading the models when the server starts, in the background, so the first search does not wait for them
(and the web page can say "loading models…" while it happens: ``/api/status`` reports ``warming``)."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from vistext.errors import VistextError
from vistext.service import Service

log = logging.getLogger(__name__)
WARM_QUERY = "a photo"  # one real search: text session, query batcher and vectors all get loaded


class WarmUp:
    """One background thread that opens the model sessions ``service`` needs for the first requests: the text
    model (one real search, when the index has text embeddings) and the image encoder (one tiny picture).
    Requests arriving meanwhile are answered as usual; a model they need is loaded once, by whoever is first."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.error: str | None = None
        # a search has run: the text model's session is open (and, on a fresh install, exported to ONNX, which
        # is what made the first search take 6-12 s); the model object alone loads cheaply and says nothing
        self.text_ready = False

    @property
    def warming(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vistext-warm-up", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until warm-up has finished (or never started); ``False`` when ``timeout`` ran out first."""
        return self._thread is None or self._done.wait(timeout)

    def _run(self) -> None:
        try:
            self._text_model()
            self.service.load_models(text=False)
        except VistextError as error:
            self.error = str(error)
            log.warning("warm-up: %s", error)
        except Exception:  # a warm-up failure must not take the server down; the request that needs it says why
            log.exception("warm-up failed")
            self.error = "warm-up failed (see the server log)"
        finally:
            self._done.set()

    def _text_model(self) -> None:
        service = self.service
        if not service.has_text_embeddings():
            return
        try:
            service.search(WARM_QUERY, 1)
            self.text_ready = True
        except VistextError as error:
            log.warning("text search unavailable: %s", error)
            return
        # concurrent requests already keep every core busy; a text batch that also forks intra-op threads
        # only makes them spin-wait for each other (the same reason as ``limits.run_blocking``). Only a PyTorch
        # text model (a GloVe joint model, with the [train] extra) has loaded torch; the runtime never imports it.
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "warming": self.warming,
            "text_model_ready": self.text_ready,
            "image_encoder_ready": self.service.image_encoder_loaded,
        }
        if self.error:
            out["warm_up_error"] = self.error
        return out
