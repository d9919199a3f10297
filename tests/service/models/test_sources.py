"""Sources only produce files in the cache: S3 through boto3 against moto's real S3 server on loopback, and
archives over HTTP from a real server; unchanged objects are not fetched again, a source gone leaves the cache
serving, and nothing in a bucket or an archive lands outside the cache."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.models.layout import scan
from service.models.sources import ArchiveSource, S3Source
from tests.support.onnx_models import write_version_dir
from tests.support.s3 import S3Server, s3_server

BUCKET = "models"
MiB = 1024 * 1024


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server() as server:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def test_s3_sync_fetches_changes_only_and_serves_offline(s3: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "local"
    write_version_dir(local, "m", "1")
    write_version_dir(local, "m", "2")
    s3.upload_tree(BUCKET, "prod/repo", local)
    source = S3Source(f"s3://{BUCKET}/prod/repo", tmp_path / "cache", max_bytes=64 * MiB, timeout_s=5)
    first = source.sync()
    assert first.offline is None and set(first.download_s) == {"m"}
    assert sorted(scan(first.root)["m"].versions) == ["1", "2"]
    onnx_file = first.root / "m" / "2" / "model.onnx"
    assert onnx_file.read_bytes() == (local / "m" / "2" / "model.onnx").read_bytes()
    mtime = onnx_file.stat().st_mtime_ns
    again = source.sync()
    assert again.download_s == {}  # every ETag unchanged: nothing fetched
    assert onnx_file.stat().st_mtime_ns == mtime
    s3.delete_prefix(BUCKET, "prod/repo/m/1/")
    assert sorted(scan(source.sync().root)["m"].versions) == ["2"]
    s3.stop()
    offline = source.sync()
    assert offline.offline
    assert sorted(scan(offline.root)["m"].versions) == ["2"]  # the cache still holds what served
    # A fresh process with the same cache and no server: the same files, no network.
    restarted = S3Source(f"s3://{BUCKET}/prod/repo", tmp_path / "cache", max_bytes=64 * MiB, timeout_s=5).sync()
    assert restarted.offline and restarted.root == offline.root
    assert (restarted.root / "m" / "2" / "model.onnx").read_bytes() == onnx_file.read_bytes()


def test_s3_refuses_a_version_over_the_cap_before_fetching_it(s3: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "local"
    write_version_dir(local, "m", "1")
    big = write_version_dir(local, "m", "2")
    (big / "padding.bin").write_bytes(b"\0" * 200_000)
    s3.upload_tree(BUCKET, "", local)
    source = S3Source(f"s3://{BUCKET}", tmp_path / "cache", max_bytes=100_000, timeout_s=5)
    result = source.sync()
    assert list(result.refused) == [("m", "2")] and "CATDOG_MODEL_MAX_BYTES" in result.refused[("m", "2")]
    assert not (result.root / "m" / "2").exists()
    assert sorted(scan(result.root)["m"].versions) == ["1"]


def test_s3_keys_that_would_escape_are_ignored(s3: S3Server, tmp_path: Path) -> None:
    client = s3.client()
    for key in ("repo/../../escape.txt", "repo/m/1/../../../../escape2.txt", "repo/.hidden/x"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    local = tmp_path / "local"
    write_version_dir(local, "m", "1")
    s3.upload_tree(BUCKET, "repo", local)
    cache = tmp_path / "cache"
    result = S3Source(f"s3://{BUCKET}/repo", cache, max_bytes=MiB, timeout_s=5).sync()
    files = sorted(p.relative_to(cache).as_posix() for p in tmp_path.rglob("*escape*"))
    assert files == []
    assert sorted(scan(result.root)) == ["m"]


@contextlib.contextmanager
def http_folder(folder: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buffer.getvalue()


def _repository_files(tmp_path: Path) -> dict[str, bytes]:
    local = tmp_path / "local"
    write_version_dir(local, "m", "1")
    return {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_over_http_is_unpacked_once_and_kept_offline(tmp_path: Path, kind: str) -> None:
    files = _repository_files(tmp_path)
    served = tmp_path / "served"
    served.mkdir()
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        (served / "models.zip").write_bytes(buffer.getvalue())
    else:
        (served / "models.tar.gz").write_bytes(_tar(files))
    with http_folder(served) as url:
        source = ArchiveSource(f"{url}/models.{kind}", tmp_path / "cache", max_bytes=MiB, timeout_s=5)
        first = source.sync()
        assert first.offline is None and "m" in first.download_s
        assert sorted(scan(first.root)["m"].versions) == ["1"]
        assert source.sync().download_s == {}  # same sha256: not unpacked again
    offline = source.sync()
    assert offline.offline and sorted(scan(offline.root)["m"].versions) == ["1"]
    digest = hashlib.sha256(files["m/1/model.onnx"]).hexdigest()
    assert hashlib.sha256((offline.root / "m/1/model.onnx").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"../escape.txt": b"x"}, None),
        ({"/abs/escape.txt": b"x"}, None),
        ({}, {"m/1/link": "/etc/passwd"}),
    ],
)
def test_archive_members_cannot_escape_and_nothing_is_unpacked(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "models.tar.gz").write_bytes(_tar({**_repository_files(tmp_path), **members}, links))
    with http_folder(served) as url:
        source = ArchiveSource(f"{url}/models.tar.gz", tmp_path / "cache", max_bytes=MiB, timeout_s=5)
        result = source.sync()
    assert result.offline and "UnsafePath" in result.offline
    assert scan(result.root) == {}
    assert not list(tmp_path.rglob("escape.txt"))


def test_archive_over_the_cap_is_refused_before_download(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "models.tar.gz").write_bytes(_tar(_repository_files(tmp_path)) + b"\0" * 50_000)
    with http_folder(served) as url:
        result = ArchiveSource(f"{url}/models.tar.gz", tmp_path / "cache", max_bytes=10_000, timeout_s=5).sync()
    assert result.offline and "CATDOG_MODEL_MAX_BYTES" in result.offline
    assert not list((tmp_path / "cache").rglob(".archive-*"))
