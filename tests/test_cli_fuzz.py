"""A fuzz-style test of the whole CLI (issue 21): every option and argument of every command, walked from the
parser itself (so an option added tomorrow is covered the day it lands), given random and boundary values
(empty, nan, inf, -1, 0, huge numbers, control and bidi characters, paths that do not exist, a folder where a
file is expected, a FIFO), one at a time on an otherwise valid command line, through ``main(argv)`` in-process.

Every case must end with an int exit status, no traceback and no "internal error" (an exception nobody
expected), within a time bound; with ``--json`` an error is still one JSON document; and no case may change a
byte of the catalogue it reads. Seeded, so a failure names a case that reproduces. The servers, the bot, the folder
watcher and the PostgreSQL server are stubbed at their entry points: their options are checked, nothing listens
or starts.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vistext.cli import build_parser, main
from vistext.errors import StoreError

SEED = 2121
# values tried per option or argument: a seeded sample of its kind's pool, plus random text (more: a deeper run)
PER_OPTION = int(os.environ.get("VISTEXT_FUZZ_PER_OPTION", "3"))
CASE_SECONDS = 60  # a case past this is a hang (real ones take well under a second; a first model load, a few)
INTS = ["", "0", "-1", "1", "3", "1001", str(2**31), str(2**63), str(10**40), "nan", "1.5", "0x10", " 7 "]
FLOATS = ["", "0", "-1", "1", "0.5", "nan", "inf", "-inf", "-0", "1e308", "5e-324", "x"]
TEXTS = ["", " ", "-", "x", "0", "-1", "nan", "\x1b[2J\x1b]0;t\x07", "名前\u202e.jpg", "a\nb\rc", "9" * 300]
ALPHABET = "ab01 .,:/=-_\x00\x01\x07\x1b\r\n\t\x7f\x85\x9b\u00e9\u202e\u2028\u540d\U0001f600\udce9"
# the entries the parser has that carry no value to fuzz
SKIPPED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


@dataclass
class Scratch:
    """The world the cases run in: a real indexed catalogue to read, and odd files to point options at."""

    root: Path
    catalogue: Path
    photo: Path

    def paths(self) -> list[str]:
        return [str(self.root / name) for name in ("missing/none.jpg", "folder", "fifo", "notes.jpg", "empty.txt")]


@pytest.fixture(scope="module")
def scratch(sample_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    root = tmp_path_factory.mktemp("fuzz")
    photos = root / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(sample_photos / name, photos / name)
    (root / "nothing").mkdir()
    (root / "folder").mkdir()
    os.mkfifo(root / "fifo")
    (root / "notes.jpg").write_text("not a photo")
    (root / "empty.txt").write_bytes(b"")
    (root / "bank.txt").write_text("a cat on a sofa\na cup of coffee\na rocket on its pad\n")
    assert main(["index", str(photos), "--quiet"]) == 0
    # the first search and similar write their vector caches' bookkeeping (test_first_read_writes_nothing)
    assert main(["search", "a cat", "--db", str(photos), "-q"]) == 0
    assert main(["similar", "1", "--db", str(photos), "-q"]) == 0
    assert main(["duplicates", "--db", str(photos), "-q"]) == 0  # fills its perceptual-hash cache once
    shutil.copy(sample_photos / "chelsea.png", root / "photo.png")
    return Scratch(root, photos / ".vistext" / "catalogue.sqlite", root / "photo.png")


def base_argv(command: str, parser: argparse.ArgumentParser, s: Scratch) -> list[str]:
    """A command line of ``command`` that is valid and quick. A command not listed here gets what its parser
    requires (``x`` or the first choice) and ``--db`` the catalogue: a new command is fuzzed too, if less deeply."""
    cat, photo, root = str(s.catalogue.parent.parent), str(s.photo), s.root
    missing_data = ["--data", f"csv:{root / 'missing.csv'}", "--out", str(root / "model")]
    bases = {
        "index": [str(root / "nothing"), "--no-text", "--db", str(root / "index.sqlite")],  # loads no model
        "similar": ["1", "--db", cat],
        "search": ["a cat", "--db", cat],
        "demo": [str(root / "folder"), "--db", str(root / "demo.sqlite")],
        "topics": ["--n", "2", "--db", cat],
        "tag": [photo],
        "caption": [photo, "--captions", str(root / "bank.txt")],
        "match": [photo, "a cat", "a rocket"],
        "tags-from-captions": [f"flickr8k:{root / 'missing'}", "--out", str(root / "tags.csv")],
        "train joint": missing_data,
        "train tagger": missing_data,
        "train matcher": missing_data,
        "eval": [*missing_data[:2], "--model", str(root / "no-model")],  # loads no model
        "bot": ["--token-env", "VISTEXT_FUZZ_TOKEN", "--db", cat],
        "map": ["--out", str(root / "map.html"), "--method", "pca", "--db", cat],
        "db": ["status", "--dir", str(root / "pg")],
        "migrate": ["--from", cat, "--to", str(root / "copy.sqlite")],
    }
    if command in bases:
        return bases[command]
    argv = [_first(a) for a in _positionals(parser) if a.nargs not in ("?", "*")]
    for action in parser._actions:
        if action.option_strings and action.required:
            argv += [action.option_strings[-1], _first(action)]
    has_db = any("--db" in a.option_strings for a in parser._actions)
    return argv + (["--db", cat] if has_db else [])


def _first(action: argparse.Action) -> str:
    return str(next(iter(action.choices))) if action.choices else "x"


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every runnable command (``train joint`` included) and its parser."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        yield prefix.strip(), parser
    for action in nested:
        for name, sub in action.choices.items():
            yield from commands(sub, f"{prefix} {name}")


def values_for(action: argparse.Action, s: Scratch, rng: random.Random) -> list[str]:
    """A seeded sample of boundary values fitting what ``action`` takes (always the FIFO where a path could be
    given), and one random string."""
    numeric = getattr(action.type, "numeric", None)
    if action.choices is not None:
        pool = [str(c) for c in action.choices] + ["", "nope", "\x1b[2J"]
    elif int in (action.type, numeric):
        pool = INTS
    elif float in (action.type, numeric):
        pool = FLOATS + INTS
    else:
        pool = TEXTS + s.paths()
    chosen = rng.sample(pool, min(PER_OPTION, len(pool)))
    fifo = str(s.root / "fifo")
    if fifo in pool and fifo not in chosen:
        chosen.append(fifo)  # every text or path option meets the FIFO: reading it must not block
    noise = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12))).replace("\x00", "")
    return [*chosen, noise]  # no NUL: a real command line cannot carry one


def cases(command: str, parser: argparse.ArgumentParser, s: Scratch) -> Iterator[list[str]]:
    """The base command line, then with one option or argument changed (or one flag added) at a time; about
    half of them with ``--json``."""
    rng = random.Random(f"{SEED}:{command}")
    base = base_argv(command, parser, s)
    yield base
    for action in parser._actions:
        if isinstance(action, SKIPPED) or action.dest == "json":
            continue
        if action.nargs == 0:  # a flag: add it
            yield [*base, action.option_strings[-1]]
            continue
        for value in values_for(action, s, rng):
            argv = _with(base, action, value, parser)
            yield [*argv, "--json"] if rng.random() < 0.5 else argv


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, SKIPPED)]


def _with(base: list[str], action: argparse.Action, value: str, parser: argparse.ArgumentParser) -> list[str]:
    """``base`` with ``action`` given ``value`` (an option's earlier value dropped; a positional replaced)."""
    if action.option_strings:
        argv, skip = [], False
        for token in base:
            if skip:
                skip = False
            elif token in action.option_strings:
                skip = True
            else:
                argv.append(token)
        name = action.option_strings[-1]
        return [*argv, f"{name}={value}"] if name.startswith("--") else [*argv, name, value]
    position = _positionals(parser).index(action)
    options = [i for i, token in enumerate(base) if token.startswith("-")]
    first_option = options[0] if options else len(base)
    argv = list(base)
    if position < first_option:
        argv[position] = value
    else:
        argv.insert(first_option, value)
    return argv


class CaseTimeout(BaseException):
    """A case ran past ``CASE_SECONDS`` (a BaseException, so no ``except Exception`` in the CLI can hide it)."""


@contextmanager
def time_bound(seconds: float, fifo: Path) -> Iterator[None]:
    """Interrupt the main thread (even in a blocking system call) after ``seconds``; then release any thread
    still blocked opening ``fifo``."""

    def interrupt(signum: int, frame: Any) -> None:
        raise CaseTimeout

    previous = signal.signal(signal.SIGUSR1, interrupt)
    watchdog = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGUSR1, previous)
        _release(fifo)


def _release(fifo: Path) -> None:
    """Open the FIFO from the other end without blocking, so a reader or writer stuck on it goes on."""
    for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
        try:
            os.close(os.open(fifo, flags))
        except OSError:
            pass
    if not stat.S_ISFIFO(fifo.lstat().st_mode):  # a command replaced it: put it back for the next case
        fifo.unlink()
        os.mkfifo(fifo)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _problem(argv: list[str], code: object, out: str, err: str) -> str | None:
    """What is wrong with how this case ended, or None."""
    if not isinstance(code, int):
        return f"exit status {code!r}"
    if "Traceback" in out + err:
        return "a traceback: " + err[-300:]
    if "internal error" in err:
        return "an unexpected exception: " + err.strip()[-300:]
    if "--json" in argv and code != 0 and argv[0] != "export":
        try:
            json.loads(out)
        except ValueError:
            return f"--json printed no valid JSON document: {out[-200:]!r}"
    return None


PARSER = build_parser()
COMMANDS = dict(commands(PARSER))


@pytest.fixture
def stubs(scratch: Scratch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens, connects, starts a database server or a Ray cluster; relative paths land in a scratch
    folder."""
    import vistext.bot
    import vistext.server
    from vistext.indexing.watch import FolderWatcher
    from vistext.store.postgres import server as pg_server

    def refuse(cls: type, *args: object, **kwargs: object) -> None:
        raise StoreError("the fuzz test starts no PostgreSQL server")

    monkeypatch.setattr(vistext.server, "run_server", lambda settings, factory: None)
    monkeypatch.setattr(vistext.bot, "run_bot", lambda service, settings: None)
    monkeypatch.setattr(FolderWatcher, "changes", lambda self: iter(()))  # index --watch: the first pass, then stop
    monkeypatch.setattr(pg_server.PgServer, "start", classmethod(refuse))
    monkeypatch.setattr(pg_server.PgServer, "attach", classmethod(lambda cls, folder: None))
    monkeypatch.setattr(pg_server.PgServer, "stop", lambda self, delete=False: None)
    monkeypatch.setitem(sys.modules, "ray", None)  # --engine ray: the one-line "needs the extra", no cluster
    monkeypatch.setenv("VISTEXT_FUZZ_TOKEN", "123:abc")
    monkeypatch.delenv("VISTEXT_DEBUG", raising=False)
    (scratch.root / "cwd").mkdir(exist_ok=True)
    monkeypatch.chdir(scratch.root / "cwd")


@contextmanager
def captured() -> Iterator[list[str]]:
    """stdout and stderr of what runs inside, as text (``[out, err]`` once it ends). Not capsys: a file name
    that is not UTF-8 is printed as its raw bytes (surrogateescape), which capsys cannot read back."""
    streams = [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict") for _ in range(2)]
    texts: list[str] = []
    with redirect_stdout(streams[0]), redirect_stderr(streams[1]):
        yield texts
    for stream in streams:
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("utf-8", "replace"))  # type: ignore[attr-defined]


def run_case(full: list[str], scratch: Scratch) -> str | None:
    """Run one command line; what went wrong, or None."""
    code: object = None
    with captured() as texts:
        try:
            with time_bound(CASE_SECONDS, scratch.root / "fifo"):
                code = main(full)
        except CaseTimeout:
            pass
    out, err = texts
    return f"no answer within {CASE_SECONDS} s" if code is None else _problem(full, code, out, err)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_survives_hostile_values(command: str, scratch: Scratch, stubs: None) -> None:
    before = _sha256(scratch.catalogue)
    problems = []
    for argv in cases(command, COMMANDS[command], scratch):
        full = [*command.split(), *argv, "--quiet"]
        problem = run_case(full, scratch)
        if _sha256(scratch.catalogue) != before:
            problem, before = "changed the catalogue it only reads", _sha256(scratch.catalogue)
        if problem:
            problems.append(f"vistext {full!r}: {problem}")
    assert not problems, f"{len(problems)} cases went wrong:\n" + "\n".join(problems[:25])


def test_the_first_search_of_a_catalogue_writes_nothing(sample_photos: Path, tmp_path: Path) -> None:
    """Read-only commands open the catalogue read-only: the vector cache's stamp lives in its own file."""
    shutil.copy(sample_photos / "coffee.png", tmp_path / "coffee.png")
    assert main(["index", str(tmp_path), "--quiet"]) == 0
    catalogue = tmp_path / ".vistext" / "catalogue.sqlite"
    before = _sha256(catalogue)
    assert main(["search", "a cup", "--db", str(tmp_path), "-q"]) == 0
    assert main(["similar", "1", "--db", str(tmp_path), "-q"]) == 0
    assert _sha256(catalogue) == before


def test_the_time_bound_interrupts_a_blocked_open(tmp_path: Path) -> None:
    """The fuzz test's own watchdog works where a hang would be: a main thread blocked opening a FIFO."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CaseTimeout), time_bound(0.5, fifo):
        fifo.open("rb")  # blocks until a writer comes, which none will
