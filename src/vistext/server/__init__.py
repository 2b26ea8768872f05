"""The HTTP server (layer 6): a JSON API and a web page over the service facade (``vistext serve``)."""

from __future__ import annotations

from vistext.server.app import create_app, run_server
from vistext.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run_server"]
