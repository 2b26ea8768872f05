"""Bearer-token check for every API request (when the server was started with a token)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from vistext.server.limits import send_json

# The page shell holds no data: a browser must load it to be able to ask the user for the token.
PUBLIC_PATHS = frozenset({"/", "/map", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)


class BearerAuth:
    """401 unless the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            reason = "missing bearer token" if not given else "wrong token"
            await send_json(
                send, 401, {"error": f"unauthorized: {reason}"}, [(b"www-authenticate", b'Bearer realm="vistext"')]
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
