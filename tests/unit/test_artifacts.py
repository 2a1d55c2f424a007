"""The local artifact store: content-addressed, atomic, size-capped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from contracts.errors import ConfigError
from storage.artifacts import (
    ArtifactNotFound,
    ArtifactTooLarge,
    LocalArtifactStore,
    open_store,
)


def test_put_returns_a_content_reference_that_reads_back(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    stored = store.put(b"<nmaprun/>", media_type="application/xml")
    assert stored.ref == f"sha256:{stored.sha256}"
    assert stored.size == len(b"<nmaprun/>")
    with store.open(stored.ref) as handle:
        assert handle.read() == b"<nmaprun/>"
    assert store.exists(stored.ref)


def test_same_content_is_stored_once_and_streams_are_accepted(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    payload = b"x" * (3 << 20)  # larger than one read chunk
    first = store.put(payload, media_type="text/plain")
    second = store.put(io.BytesIO(payload), media_type="text/plain")
    assert first.ref == second.ref
    assert len(list((tmp_path / "sha256").rglob("*"))) == 3  # two directories and one file
    assert not list((tmp_path / "tmp").iterdir()), "no temporary file is left behind"


def test_oversized_artifact_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactTooLarge):
        store.put(io.BytesIO(b"y" * 5000), media_type="text/plain", max_bytes=4096)
    assert not (tmp_path / "sha256").exists()
    assert not list((tmp_path / "tmp").iterdir())


def test_unknown_or_malformed_references_raise_not_found(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFound):
        store.open("sha256:" + "0" * 64)
    with pytest.raises(ArtifactNotFound, match="expected sha256"):
        store.open("../../etc/passwd")
    stored = store.put(b"gone", media_type="text/plain")
    store.delete(stored.ref)
    assert not store.exists(stored.ref)


def test_store_urls_pick_the_backend_or_say_why_not(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path.as_uri()), LocalArtifactStore)
    assert open_store(str(tmp_path)).root == tmp_path  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="S3"):
        open_store("s3://bucket/prefix")
    with pytest.raises(ConfigError, match="ftp"):
        open_store("ftp://host/x")


def test_stored_artifacts_are_registered_once_in_the_database(tmp_path: Path) -> None:
    from storage.artifacts import record_artifact
    from storage.database import session_scope
    from storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    stored = LocalArtifactStore(tmp_path / "artifacts").put(b"raw", media_type="text/plain")
    with session_scope(url) as session:
        first = record_artifact(session, stored)
        second = record_artifact(session, stored)
        assert first.id == second.id
        assert first.size == 3 and first.sha256 == stored.sha256
