"""Run inside a private network namespace (``unshare -n``) by ``test_ray_nodes.py``: a three-node Ray cluster on
its loopback (a head without CPUs, two one-CPU worker nodes), ``vistext index --engine ray --address`` on it, and
one worker node killed with SIGKILL once the first rows are written.

    python tests/ray_nodes.py PHOTOS CATALOGUE TEMP

Prints one JSON line: the driver's exit status and report, and the rows the catalogue held when the node was
killed. Every Ray process is started in a process group of its own and killed with it at the end: ``ray stop``
would stop every Ray cluster on the machine, other people's included.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

PORT = 6379  # the namespace's own loopback: no other cluster can be listening there
RAY = str(Path(sys.executable).parent / "ray")


def start_node(number: int, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Node ``number`` of the cluster, on ports of its own (nodes of one address would race for the same ones)."""
    base = 7000 + 20 * number
    ports = ["node-manager", "object-manager", "metrics-export", "dashboard-agent-listen", "dashboard-agent-grpc"]
    own = [f"--{name}-port={base + i}" for i, name in enumerate([*ports, "runtime-env-agent"])]
    own += [f"--min-worker-port={base + 100}", f"--max-worker-port={base + 119}"]
    command = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *own, *args]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=sys.stderr)


def kill_node(node: subprocess.Popen[bytes]) -> None:
    """SIGKILL a node: its process group, and the worker processes its raylet started in sessions of their own."""
    try:
        family = psutil.Process(node.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    node.wait()


def rows(catalogue: str) -> int:
    try:
        with sqlite3.connect(f"file:{catalogue}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def wait_for_nodes(count: int, env: dict[str, str], timeout: float = 120) -> None:
    probe = (
        "import ray, sys, time\n"
        "ray.init(address=sys.argv[1], log_to_driver=False)\n"
        "end = time.time() + float(sys.argv[3])\n"
        "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]) and time.time() < end: time.sleep(0.2)\n"
        "sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= int(sys.argv[2]) else 1)"
    )
    subprocess.run([sys.executable, "-c", probe, f"127.0.0.1:{PORT}", str(count), str(timeout)], env=env, check=True)


def main() -> None:
    photos, catalogue, temp = sys.argv[1:4]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # several nodes on one address (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 refuses that), a token kept in memory
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1", RAY_AUTH_MODE="token")
    env["RAY_AUTH_TOKEN"] = os.urandom(16).hex()
    # a lost node is noticed within seconds, not Ray's default half a minute
    env.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    head = ["--head", f"--port={PORT}", "--num-cpus=0", "--include-dashboard=false", f"--temp-dir={temp}"]
    nodes = [start_node(0, head, env)]
    try:
        wait_for_nodes(1, env)
        for number in (1, 2):
            nodes.append(start_node(number, [f"--address=127.0.0.1:{PORT}", "--num-cpus=1"], env))
            wait_for_nodes(number + 1, env)
        index = [sys.executable, "-m", "vistext.cli.main", "index", photos, "--engine", "ray", "--no-text"]
        index += ["--address", f"127.0.0.1:{PORT}", "--db", catalogue, "--json", "--quiet"]
        driver = subprocess.Popen(index, env=env, stdout=subprocess.PIPE)
        while rows(catalogue) == 0 and driver.poll() is None:
            time.sleep(0.05)
        at_kill = rows(catalogue)
        kill_node(nodes[1])  # a worker node dies: its raylet, object store and workers
        out, _ = driver.communicate(timeout=400)
        print(json.dumps({"status": driver.returncode, "stdout": out.decode(), "rows_at_kill": at_kill}))
    finally:
        for node in nodes:
            kill_node(node)


if __name__ == "__main__":
    main()
