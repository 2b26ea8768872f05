"""Cold start of the command line: wall time and peak RSS of fresh `vistext` processes on a ~10k-photo index.

    .venv/bin/python bench/cli.py --previous /tmp/prev/src    # beside the previous release (a checkout's src/)
    .venv/bin/python bench/cli.py --runs 1                     # this version only, one run per command

Each command runs --runs times (default 5) as a fresh process, after one untimed warm-up run (models exported,
caches written: "models on disk"); the table shows the median wall time and the median peak RSS. The index
holds the 8,091 Flickr8k photos, the 1,000 Flickr8k originals and the 1,034 opendomain-classes photos (a folder
of symlinks, 10,125 photos); it is built once per version into --workdir and reused by later runs. The
previous release indexes first; this version starts from a copy of that catalogue (so it pays only for what its
own index adds). Each version gets its own VISTEXT_HOME there, and the versions take turns run by run (the
load of a shared machine then slows both alike). Commands: `index` on an empty folder, `search`, `similar` (an
indexed photo), `tag --vocab` (the 26 opendomain labels), `match` (three tag sets, default model) and `caption`
(the Flickr8k caption bank, cached by the warm-up run).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("VISTEXT_DATASETS", ROOT.parent / "shared" / "datasets"))
FLICKR8K = DATASETS / "flickr8k"
OPENDOMAIN = DATASETS / "opendomain-classes"
PHOTO = "1001773457_577c3a7d70.jpg"  # "A black dog and a spotted dog are fighting"
RUN_CLI = "import sys; from vistext.cli.main import main; sys.exit(main(sys.argv[1:]))"


def build_folder(folder: Path) -> Path:
    """A folder of symlinks to every photo of the three sets (created once)."""
    sources = [
        ("flickr8k", sorted((FLICKR8K / "images").glob("*.jpg"))),
        ("originals", sorted((FLICKR8K / "originals").glob("*.jpg"))),
        ("opendomain", sorted(p for p in OPENDOMAIN.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))),
    ]
    if not sources[0][1]:
        sys.exit(f"no Flickr8k photos under {FLICKR8K}/images")
    for name, paths in sources:
        for path in paths:
            link = folder / name / (path.relative_to(OPENDOMAIN) if name == "opendomain" else Path(path.name))
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
    return folder


def labels() -> list[str]:
    with (OPENDOMAIN / "classes.csv").open(encoding="utf-8") as handle:
        return [row["label"] for row in csv.DictReader(handle)]


def run(src: Path, home: Path, argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """One fresh process: (wall seconds, peak RSS in MB, exit code)."""
    env = {**os.environ, "PYTHONPATH": str(src), "VISTEXT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env["TRANSFORMERS_OFFLINE"] = "1"
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        error = process.stderr.read().decode(errors="replace").strip().splitlines() if process.stderr else []
        print(f"  {' '.join(argv[:2])}: exit {process.returncode}: {error[-1] if error else ''}", file=sys.stderr)
    if process.stderr:
        process.stderr.close()
    return wall, usage.ru_maxrss / 1024, process.returncode


def prepare_index(src: Path, home: Path, photos: Path, db: Path, start_from: Path | None) -> None:
    if db.is_file():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    if start_from is not None and start_from.is_file():
        for file in start_from.parent.iterdir():
            shutil.copy2(file, db.parent / file.name)
    print(f"indexing {photos} into {db} (once) ...", flush=True)
    wall, rss, code = run(src, home, ["index", str(photos), "--db", str(db), "--quiet"], photos)
    if code != 0:
        sys.exit(f"indexing failed with {src}")
    print(f"  {wall:.0f} s, peak RSS {rss:.0f} MB", flush=True)


def commands(db: Path, photos: Path, empty: Path) -> dict[str, list[str]]:
    photo = str(photos / "flickr8k" / PHOTO)
    return {
        "index (empty folder)": ["index", str(empty), "--quiet"],
        "search": ["search", "two dogs playing in the snow", "--db", str(db), "-k", "10"],
        "similar": ["similar", photo, "--db", str(db), "-k", "10"],
        "tag --vocab (26 labels)": ["tag", "--vocab", ",".join(labels()), photo],
        "match (3 tag sets)": ["match", photo, "dog, grass", "cat, sofa", "man, bicycle"],
        "caption (Flickr8k bank)": ["caption", photo, "--captions", f"flickr8k:{FLICKR8K}", "--db", str(db)],
    }


class Version:
    """One version of vistext under test: its src/, VISTEXT_HOME and catalogue."""

    def __init__(self, label: str, src: Path, work: Path, key: str) -> None:
        self.label, self.src = label, src
        self.home, self.db = work / f"home-{key}", work / f"index-{key}" / "catalogue.sqlite"


def measure(
    versions: list[Version], photos: Path, runs: int, only: list[str] | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """Median (wall, RSS) per version and command (``only``: the commands whose name starts with one of these).
    The versions take turns run by run, so a machine whose load changes (other jobs on its 2 cores) slows them
    alike."""
    table: dict[str, dict[str, tuple[float, float]]] = {v.label: {} for v in versions}
    for name in commands(photos, photos, photos):
        if only and not name.startswith(tuple(only)):
            continue
        samples: dict[str, list[tuple[float, float]]] = {v.label: [] for v in versions}
        failed: set[str] = set()
        for attempt in range(runs + 1):
            for version in versions:
                if version.label in failed:
                    continue
                with tempfile.TemporaryDirectory(prefix="vistext-empty-") as empty:
                    argv = commands(version.db, photos, Path(empty))[name]
                    wall, rss, code = run(version.src, version.home, argv, photos)
                if code != 0:
                    failed.add(version.label)
                elif attempt:  # the first run warms the caches (ONNX exports, caption bank) and is not counted
                    samples[version.label].append((wall, rss))
        load = os.getloadavg()[0]
        for version in versions:
            got = samples[version.label] if version.label not in failed else [(float("nan"), float("nan"))]
            wall, rss = statistics.median(w for w, _ in got), statistics.median(r for _, r in got)
            table[version.label][name] = (wall, rss)
            print(f"  {version.label}: {name}: {wall:.2f} s, {rss:.0f} MB (load {load:.1f})", flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vistext-bench-cli")
    parser.add_argument("--previous", type=Path, help="the previous release's src/ (e.g. a git worktree's)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="+", help="only these commands (name prefixes: search, similar, tag, ...)")
    args = parser.parse_args()
    work = args.workdir.resolve()
    photos = build_folder(work / "photos")
    versions = [Version("this version", ROOT / "src", work, "current")]
    if args.previous is not None:
        versions.insert(0, Version("previous release", args.previous.resolve(), work, "previous"))
    start_from: Path | None = None
    for version in versions:
        prepare_index(version.src, version.home, photos, version.db, start_from)
        start_from = version.db
    table = measure(versions, photos, args.runs, args.only)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ncold CLI, median of {args.runs} fresh processes, {os.cpu_count()} CPUs (load average now {load}); "
        "wall s / peak RSS MB"
    )
    print("| command | " + " | ".join(f"{v.label} wall | {v.label} RSS" for v in versions) + " |")
    print("|" + " --- |" * (1 + 2 * len(versions)))
    for name in table[versions[0].label]:
        cells = [f"{table[v.label][name][0]:.2f} | {table[v.label][name][1]:.0f}" for v in versions]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
