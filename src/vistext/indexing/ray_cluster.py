"""The Ray cluster an indexing run uses: joined at ``--address``, or a private one started for the run.

A private cluster listens on 127.0.0.1 only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: otherwise Ray binds the
machine's public address) and uses token authentication with a token that lives only in this process's
environment (``RAY_AUTH_TOKEN``, inherited by the processes the cluster starts): left to itself, Ray 2.60 writes
a new token to ``~/.ray/auth_token`` with the default umask (readable by every user of the machine), and from
then on every ``ray start`` on the machine turns token authentication on and needs that file. A mode or token
the user set (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``) is left as it is.

While connected, the process's standard output (file descriptor 1) points at standard error: Ray's processes
and its C++ core write there unasked, and ``--json`` promises one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vistext.errors import StoreError, UsageError
from vistext.store import Store

log = logging.getLogger(__name__)

# read when ray is first imported or a cluster is started: set before either
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_PROCESS_TOKEN = secrets.token_hex(32)  # one per process: Ray's C++ loader caches the first token it reads


@contextmanager
def ray_cluster(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Connected to Ray for the duration: an existing connection, the cluster at ``address``, or a private
    local one (loopback only, a token kept in memory) that is shut down afterwards. Yields the cluster's
    resources."""
    if address is not None and address.startswith("ray://"):
        raise UsageError(
            f"{address}: Ray Data does not run through the ray:// client; pass the cluster's HOST:PORT from one "
            "of its nodes, or submit `vistext index --engine ray` as a Ray job"
        )
    with _private_cluster_env(address is None), _stdout_to_stderr():
        try:
            import ray
        except ImportError as error:
            raise UsageError(
                f"--engine ray needs the [distributed] extra (pip install 'vistext[distributed]'): {error}"
            ) from None
        started = False
        if not ray.is_initialized():
            _connect(ray, address, num_cpus)
            started = True
        try:
            yield dict(ray.cluster_resources())
        finally:
            if started:
                ray.shutdown()


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> None:
    # log_to_driver=False: a worker's failure reaches the driver as an exception; the workers' and raylets' log
    # lines would otherwise be printed on this process's stdout
    try:
        if address is None:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or "a local Ray cluster"
        raise UsageError(f"{where}: cannot connect to Ray ({' '.join(str(error).split())[:200]})") from None


@contextmanager
def _private_cluster_env(private: bool) -> Iterator[None]:
    """The environment a private cluster starts with (loopback only, an in-memory token), restored afterwards."""
    if not private:
        yield
        return
    wanted: dict[str, str] = dict(LOOPBACK_ENV)
    if not any(os.environ.get(name) for name in AUTH_VARIABLES):
        wanted.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_PROCESS_TOKEN)
    saved = {name: os.environ.get(name) for name in wanted}
    for name, value in wanted.items():
        os.environ.setdefault(name, value)
    _reload_auth_settings()
    try:
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
        _reload_auth_settings()


def _reload_auth_settings() -> None:
    """Make an already imported Ray read the authentication mode and token from the environment again (it reads
    them once, when first imported or first connecting, and caches them)."""
    if "ray._raylet" not in sys.modules:
        return
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 points at standard error for the duration (restored afterwards)."""
    try:
        out, err = sys.__stdout__.fileno(), sys.__stderr__.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):  # no real stdout (a test harness, an embedded interpreter)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(out)
    os.dup2(err, out)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, out)
        os.close(saved)


def alive_nodes() -> dict[str, str]:
    """Node id -> IP address of every live node of the connected cluster."""
    import ray

    return {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}


def smallest_node_cpus() -> float | None:
    """The CPUs of the smallest live node that has any (None when none has)."""
    import ray

    cpus = [float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes() if node["Alive"]]
    return min((c for c in cpus if c > 0), default=None)


def check_store_fits(store: Store, store_uri: str) -> None:
    """Refuse the embedded SQLite catalogue when the cluster has nodes on other machines."""
    import ray

    if getattr(store, "backend", "") != "sqlite":
        return
    here = ray.util.get_node_ip_address()
    elsewhere = sorted(set(alive_nodes().values()) - {here})
    if elsewhere:
        raise StoreError(
            f"{store_uri}: the embedded SQLite catalogue can only be written from this machine, but the Ray cluster "
            f"has nodes on {', '.join(elsewhere)}; pass --db postgresql://... (a server store) for a multi-node run"
        )
