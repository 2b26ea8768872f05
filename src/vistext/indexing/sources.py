"""Where an indexing run reads photos from: a folder (local or shared by every node) or object storage.

``photo_source("s3://bucket/prefix")`` lists and reads objects through pyarrow's S3 filesystem; credentials,
region and endpoint come from the usual ``AWS_*`` variables of the process that plans the run
(``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO or moto) and travel with the source to the
workers, so workers need no configuration of their own. Objects are stored under their full URL
(``s3://bucket/prefix/a.jpg``), files under their absolute path. A source is picklable: Ray ships it to workers.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from vistext.errors import ImageDecodeError, UsageError
from vistext.images import IMAGE_SUFFIXES
from vistext.indexing.plan import IndexReport, list_folder

OBJECT_SCHEMES = ("s3",)


def is_object_url(location: str | Path) -> bool:
    """Whether ``location`` names object storage (``s3://...``) rather than a folder."""
    return isinstance(location, str) and location.split("://", 1)[0] in OBJECT_SCHEMES and "://" in location


@dataclass(frozen=True)
class FolderSource:
    """Photos in a folder every worker can read under the same path (this machine, or a shared mount)."""

    root: Path

    @property
    def name(self) -> str:
        return str(self.root)

    def listing(self, report: IndexReport) -> Iterator[tuple[str, int, float]]:
        return list_folder(self.root, report)

    @contextmanager
    def local_file(self, path: str) -> Iterator[str]:
        yield path


@dataclass(frozen=True)
class ObjectSource:
    """Photos under an ``s3://bucket/prefix`` URL, read through pyarrow's S3 filesystem."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)  # S3FileSystem keyword arguments

    @property
    def name(self) -> str:
        return self.url

    def _filesystem(self) -> Any:
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(**self.options)

    def _key(self, path: str) -> str:
        return path.split("://", 1)[1]

    def listing(self, report: IndexReport) -> Iterator[tuple[str, int, float]]:
        """Image objects under the prefix, sorted, hidden names (a part starting with ``.``) skipped."""
        from pyarrow.fs import FileSelector, FileType

        base = self._key(self.url)
        try:
            infos = self._filesystem().get_file_info(FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as error:
            raise UsageError(f"{self.url}: cannot list the objects ({_one_line(error)})") from None
        for info in sorted(infos, key=lambda i: i.path):
            relative = PurePosixPath(info.path).relative_to(base)
            if info.type != FileType.File or any(part.startswith(".") for part in relative.parts):
                continue
            if relative.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            yield f"s3://{info.path}", int(info.size or 0), mtime

    @contextmanager
    def local_file(self, path: str) -> Iterator[str]:
        """The object copied to a temporary file (decoders want a real file), removed afterwards."""
        suffix = PurePosixPath(path).suffix
        with tempfile.TemporaryDirectory(prefix="vistext-object-") as folder:
            local = os.path.join(folder, f"object{suffix}")
            try:
                with self._filesystem().open_input_stream(self._key(path)) as source, open(local, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            except OSError as error:
                raise ImageDecodeError(path, f"cannot read the object ({_one_line(error)})") from None
            yield local


PhotoSource = FolderSource | ObjectSource


def photo_source(location: str | Path) -> PhotoSource:
    """The source for a folder path or an ``s3://bucket/prefix`` URL; a missing folder is a ``UsageError``."""
    if is_object_url(location):
        url = str(location).rstrip("/")
        if not urlsplit(url).netloc:
            raise UsageError(f"{location}: no bucket named (expected s3://bucket/prefix)")
        return ObjectSource(url, s3_options(os.environ))
    if isinstance(location, str) and "://" in location:
        raise UsageError(f"{location}: photos can be read from a folder or {', '.join(OBJECT_SCHEMES)}:// only")
    root = Path(location).resolve()
    if not root.is_dir():
        raise UsageError(f"{location}: not a folder")
    return FolderSource(root)


def s3_options(env: os._Environ[str] | dict[str, str]) -> dict[str, Any]:
    """S3FileSystem arguments from ``AWS_*`` variables: keys, session token, region and an endpoint URL."""
    options: dict[str, Any] = {}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"])
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return options


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
