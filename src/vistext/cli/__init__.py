"""The ``vistext`` command line (layer 6): parse, call the service, format. Nothing else lives here."""

from __future__ import annotations

from vistext.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
