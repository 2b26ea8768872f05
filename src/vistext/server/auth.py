"""Who may ask: the ``Host:`` check against DNS rebinding, and the bearer-token check for every API request (when
the server was started with a token)."""

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


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def host_name(header: str) -> str:
    """The host of a ``Host:`` header, lower case, without its port (``[::1]:8000`` -> ``::1``)."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def answered_hosts(bound: str, allowed: frozenset[str], token: str | None) -> frozenset[str] | None:
    """The ``Host:`` names a server bound to ``bound`` answers: loopback names, the bound address and the
    ``allowed`` ones; ``None`` (any) only for a server on every address with a token and no list given."""
    if bound in WILDCARD_HOSTS and token and not allowed:
        return None
    names = {"localhost", "127.0.0.1", "::1", *(host_name(name) for name in allowed)}
    if bound not in WILDCARD_HOSTS:
        names.add(host_name(bound))
    return frozenset(names)


class HostCheck:
    """421 for a request whose ``Host:`` is not one this server answers to: a web page on another name that a
    rebinding DNS points at 127.0.0.1 must not read the catalogue (or the originals) through the user's browser.
    It sits inside ``BodyLimits`` and outside ``BearerAuth`` (a foreign name gets 421, never a token prompt)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        if host_name(given) not in self.hosts:
            # the request is read to its end first (within the body limits around this check), so the
            # connection stays in step and a body that never arrives is still a 408
            message = await receive()
            while message["type"] == "http.request" and message.get("more_body", False):
                message = await receive()
            shown = given[:80].encode("ascii", "backslashreplace").decode() or "(none)"
            await send_json(send, 421, {"error": f"misdirected request: this server does not answer to Host {shown}"})
            return
        await self.app(scope, receive, send)
