"""The server's JSON responses: the service's one JSON writer, so a file name that is not valid UTF-8 is sent
as its JSON escape instead of failing the request with a 500."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse as _FrameworkJSONResponse
from fastapi.responses import Response

from vistext.service.results import json_text


class JSONResponse(_FrameworkJSONResponse):
    def render(self, content: Any) -> bytes:
        return json_text(content, compact=True).encode("utf-8")


class WrittenJSON(Response):
    """JSON already written (e.g. ``SearchResult.to_json``, made once per kept page)."""

    media_type = "application/json"
