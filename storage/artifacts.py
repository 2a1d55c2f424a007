"""The artifact store: raw tool output and large evidence, addressed by content.

An artifact's reference is ``sha256:<hex digest>``, the same in every backend, so a
finding's evidence can point at it wherever it is stored. The local directory store
is the default; an S3-compatible store implements the same :class:`ArtifactStore`
protocol (put / open / exists / delete) and is chosen by URL scheme.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, PermanentError
from storage.models import Artifact

_REF = re.compile(r"^sha256:([0-9a-f]{64})$")
_CHUNK = 1 << 20


class ArtifactNotFound(PermanentError):
    """No artifact with that reference is stored."""


class ArtifactTooLarge(PermanentError):
    """The artifact is larger than the limit given to ``put``."""


@dataclass(frozen=True)
class StoredArtifact:
    ref: str
    sha256: str
    size: int
    media_type: str


def parse_ref(ref: str) -> str:
    """The hex digest of a reference, or a clear error for anything else."""
    match = _REF.match(ref)
    if match is None:
        raise ArtifactNotFound(f"not an artifact reference: {ref!r} (expected sha256:<hex>)")
    return match.group(1)


class ArtifactStore(Protocol):
    def put(
        self, data: bytes | BinaryIO, *, media_type: str, max_bytes: int | None = None
    ) -> StoredArtifact:
        """Store bytes or a binary stream; storing the same content twice is a no-op."""

    def open(self, ref: str) -> BinaryIO:
        """A binary stream of the artifact; raises :class:`ArtifactNotFound`."""

    def exists(self, ref: str) -> bool: ...

    def delete(self, ref: str) -> None: ...


class LocalArtifactStore:
    """Content-addressed files under ``root/sha256/ab/cd/<digest>``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest[2:4] / digest

    @contextmanager
    def _staging(self) -> Iterator[tuple[BinaryIO, Path]]:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle, path
        finally:
            path.unlink(missing_ok=True)

    def put(
        self, data: bytes | BinaryIO, *, media_type: str, max_bytes: int | None = None
    ) -> StoredArtifact:
        if isinstance(data, bytes) and (max_bytes is None or len(data) <= max_bytes):
            # Content already stored (a re-scan's unchanged output): nothing to write.
            known = hashlib.sha256(data).hexdigest()
            if self._path(known).exists():
                return StoredArtifact(f"sha256:{known}", known, len(data), media_type)
        digest = hashlib.sha256()
        size = 0
        with self._staging() as (handle, tmp_path):
            chunks = [data] if isinstance(data, bytes) else iter(lambda: data.read(_CHUNK), b"")
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ArtifactTooLarge(f"artifact exceeds {max_bytes} bytes")
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
            hex_digest = digest.hexdigest()
            final = self._path(hex_digest)
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_path, final)
        return StoredArtifact(f"sha256:{hex_digest}", hex_digest, size, media_type)

    def open(self, ref: str) -> BinaryIO:
        path = self._path(parse_ref(ref))
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {ref} is not in {self.root}") from exc

    def exists(self, ref: str) -> bool:
        return self._path(parse_ref(ref)).exists()

    def delete(self, ref: str) -> None:
        self._path(parse_ref(ref)).unlink(missing_ok=True)


def open_store(url: str) -> ArtifactStore:
    """The store for ``file:///path`` (or a plain path); other schemes are refused clearly."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return LocalArtifactStore(Path(unquote(parts.path if parts.scheme else url)))
    if parts.scheme == "s3":
        raise ConfigError(
            "no S3-compatible artifact backend is installed in this build; "
            "use a file:// URL (SCANFLEET_ARTIFACT_URL)"
        )
    raise ConfigError(f"unsupported artifact store URL scheme {parts.scheme!r}")


def record_artifact(
    session: Session,
    stored: StoredArtifact,
    *,
    scan_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
) -> Artifact:
    """Register a stored artifact in the database (once per reference)."""
    existing = session.scalar(select(Artifact).where(Artifact.ref == stored.ref))
    if existing is not None:
        return existing
    row = Artifact(
        ref=stored.ref,
        sha256=stored.sha256,
        size=stored.size,
        media_type=stored.media_type,
        scan_id=scan_id,
        task_id=task_id,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row
