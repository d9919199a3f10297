"""Where a repository's bytes come from: a local folder, an S3 bucket (`s3://bucket/prefix`, any S3-compatible
store) or an archive over HTTPS (`https://.../models.tar.gz` or `.zip`). A remote source only produces files in
the cache folder (CATDOG_MODEL_CACHE_DIR); the registry loads from there and never cares where bytes came from.

The cache remembers each object's ETag (S3) or the archive's ETag and sha256 (HTTPS), so an unchanged version is
not fetched again, and a restart with the source gone serves what the cache holds (`offline`). Credentials,
region and endpoint come from boto3's standard chain (AWS_ENDPOINT_URL, static keys, a profile, IRSA / web
identity, assume-role): catdog has no settings of its own for them. Every sync runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from service.models.safety import UnsafePath, inside, safe_relative
from service.models.versions import is_version_name

log = structlog.get_logger(__name__)

Group = tuple[str, str]
"""(model, version folder); the version folder is "" in the one-version layout."""


@dataclass(slots=True)
class SyncResult:
    root: Path
    download_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent fetching each model's changed files in this sync (absent: nothing fetched)."""
    refused: dict[Group, str] = field(default_factory=dict)
    """Versions not fetched, and why (over the size cap)."""
    offline: str | None = None
    """Why the source could not be read: the cache's last copy serves."""


class Source(Protocol):
    description: str

    def sync(self) -> SyncResult: ...


def open_source(location: str, cache_dir: Path, *, max_bytes: int, timeout_s: float) -> Source:
    scheme = urlsplit(location).scheme
    if scheme == "s3":
        return S3Source(location, cache_dir, max_bytes=max_bytes, timeout_s=timeout_s)
    if scheme in ("https", "http"):
        return ArchiveSource(location, cache_dir, max_bytes=max_bytes, timeout_s=timeout_s)
    return LocalSource(Path(location))


def group_of(relative: PurePosixPath) -> Group:
    parts = relative.parts
    if len(parts) >= 3 and is_version_name(parts[1]):
        return parts[0], parts[1]
    return parts[0], ""


class LocalSource:
    """A folder on disk (a checkout, a volume, KServe's /mnt/models): read in place, nothing copied."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = str(root)

    def sync(self) -> SyncResult:
        return SyncResult(self.root)


def _cache_folder(cache_dir: Path, kind: str, location: str) -> Path:
    parts = urlsplit(location)
    clean = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # no credentials, no query in the key
    return cache_dir / kind / hashlib.sha256(clean.encode()).hexdigest()[:16]


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _prune_empty(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


class S3Source:
    def __init__(self, location: str, cache_dir: Path, *, max_bytes: int, timeout_s: float) -> None:
        parts = urlsplit(location)
        if not parts.netloc:
            raise ValueError(f"an S3 location needs a bucket: {location!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.description = f"s3://{self.bucket}/{self.prefix}"
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.folder = _cache_folder(cache_dir, "s3", location)
        self.tree = self.folder / "tree"
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import boto3  # only for s3:// repositories
            from botocore.config import Config

            config = Config(
                connect_timeout=min(self.timeout_s, 10.0),
                read_timeout=self.timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
            )
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def sync(self) -> SyncResult:
        self.tree.mkdir(parents=True, exist_ok=True)
        result = SyncResult(self.tree)
        manifest_path = self.folder / "manifest.json"
        manifest: dict[str, Any] = _read_json(manifest_path)
        try:
            listing = self._list()
        except Exception as exc:
            result.offline = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("model_source_offline", source=self.description, error=result.offline)
            return result
        sizes: dict[Group, int] = defaultdict(int)
        for relative, (size, _) in listing.items():
            sizes[group_of(relative)] += size
        for group, size in sizes.items():
            if size > self.max_bytes:
                result.refused[group] = f"{size} bytes is over CATDOG_MODEL_MAX_BYTES ({self.max_bytes}): not fetched"
        wanted = {r: v for r, v in listing.items() if group_of(r) not in result.refused}
        for key in [k for k in manifest if PurePosixPath(k) not in wanted]:
            with contextlib.suppress(OSError, UnsafePath):
                inside(self.tree, key).unlink()
            del manifest[key]
        for path in [p for p in self.tree.rglob("*") if p.is_file()]:
            if PurePosixPath(path.relative_to(self.tree).as_posix()) not in wanted:
                path.unlink()  # left by an interrupted sync, or no longer in the bucket
        _prune_empty(self.tree)
        try:
            for relative, (size, etag) in sorted(wanted.items()):
                entry = manifest.get(str(relative))
                target = inside(self.tree, relative)
                if entry == {"etag": etag, "size": size} and target.is_file() and target.stat().st_size == size:
                    continue
                model = relative.parts[0]
                started = _now()
                self._download(relative, size, etag, target)
                result.download_s[model] = result.download_s.get(model, 0.0) + _now() - started
                manifest[str(relative)] = {"etag": etag, "size": size}
        except Exception as exc:
            result.offline = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("model_source_offline", source=self.description, error=result.offline)
        _write_json(manifest_path, manifest)
        return result

    def _list(self) -> dict[PurePosixPath, tuple[int, str]]:
        objects: dict[PurePosixPath, tuple[int, str]] = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                key: str = obj["Key"]
                if key.endswith("/"):
                    continue  # a "folder" marker
                try:
                    relative = safe_relative(key[len(self.prefix) :])
                except UnsafePath:
                    log.warning("model_object_refused", source=self.description, key=key[:200], reason="unsafe key")
                    continue
                if len(relative.parts) < 2 or any(p.startswith(".") for p in relative.parts):
                    continue
                objects[relative] = (int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
        return objects

    def _download(self, relative: PurePosixPath, size: int, etag: str, target: Path) -> None:
        """To a temporary file beside the target, then renamed: a reader never sees half a file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        response = self.client().get_object(Bucket=self.bucket, Key=self.prefix + str(relative))
        got = str(response.get("ETag", "")).strip('"')
        if etag and got and got != etag:
            raise RuntimeError(f"{relative} changed while it was fetched")
        body = response["Body"]
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            written = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := body.read(1 << 20):
                    written += len(chunk)
                    if written > size:
                        raise RuntimeError(f"{relative} is larger than its listing said ({size} bytes)")
                    out.write(chunk)
            if written != size:
                raise RuntimeError(f"{relative}: {written} of {size} bytes arrived")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


class ArchiveSource:
    """A `.tar.gz` / `.tgz` / `.tar` / `.zip` of a repository over HTTPS: fetched again only when its ETag (or,
    without one, its sha256) changes; unpacked into a fresh folder and swapped in whole."""

    def __init__(self, location: str, cache_dir: Path, *, max_bytes: int, timeout_s: float) -> None:
        self.url = location
        self.description = urlsplit(location)._replace(query="", fragment="").geturl()
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.folder = _cache_folder(cache_dir, "https", location)
        self.tree = self.folder / "tree"

    def sync(self) -> SyncResult:
        self.folder.mkdir(parents=True, exist_ok=True)
        result = SyncResult(self.tree)
        manifest_path = self.folder / "manifest.json"
        manifest = _read_json(manifest_path)
        try:
            started = _now()
            fetched = self._fetch(manifest if self.tree.is_dir() else {})
            if fetched is not None:
                archive, etag, sha256 = fetched
                try:
                    if sha256 != manifest.get("sha256") or not self.tree.is_dir():
                        result.refused = self._unpack(archive)
                        for model in {p.name for p in self.tree.iterdir() if p.is_dir()}:
                            result.download_s[model] = _now() - started
                    _write_json(manifest_path, {"etag": etag, "sha256": sha256, "url": self.description})
                finally:
                    archive.unlink(missing_ok=True)
        except Exception as exc:
            result.offline = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("model_source_offline", source=self.description, error=result.offline)
        self.tree.mkdir(parents=True, exist_ok=True)
        return result

    def _fetch(self, manifest: dict[str, Any]) -> tuple[Path, str, str] | None:
        import httpx

        headers = {"If-None-Match": manifest["etag"]} if manifest.get("etag") else {}
        with (
            httpx.Client(timeout=self.timeout_s, follow_redirects=True) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            if response.status_code == 304:
                return None
            response.raise_for_status()
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise RuntimeError(f"the archive is {declared} bytes, over CATDOG_MODEL_MAX_BYTES ({self.max_bytes})")
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".archive-")
            digest = hashlib.sha256()
            written = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        written += len(chunk)
                        if written > self.max_bytes:
                            raise RuntimeError(f"the archive is over CATDOG_MODEL_MAX_BYTES ({self.max_bytes})")
                        digest.update(chunk)
                        out.write(chunk)
            except BaseException:
                os.unlink(tmp)
                raise
            return Path(tmp), response.headers.get("etag", ""), digest.hexdigest()

    def _unpack(self, archive: Path) -> dict[Group, str]:
        """Every member checked before anything is written: regular files and folders only (no links, devices),
        names inside the tree; versions over the size cap left out. Then swapped in with two renames."""
        members = _members(archive)
        sizes: dict[Group, int] = defaultdict(int)
        for relative, size, _ in members:
            if len(relative.parts) >= 2:
                sizes[group_of(relative)] += size
        refused = {
            g: f"{s} bytes is over CATDOG_MODEL_MAX_BYTES ({self.max_bytes}): not unpacked"
            for g, s in sizes.items()
            if s > self.max_bytes
        }
        fresh = Path(tempfile.mkdtemp(dir=self.folder, prefix=".tree-"))
        try:
            for relative, _, read in members:
                if len(relative.parts) < 2 or group_of(relative) in refused:
                    continue
                target = inside(fresh, relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                with read() as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            old = self.folder / ".tree-old"
            shutil.rmtree(old, ignore_errors=True)
            if self.tree.exists():
                os.replace(self.tree, old)
            os.replace(fresh, self.tree)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        return refused


def _members(archive: Path) -> list[tuple[PurePosixPath, int, Any]]:
    """(name, size, opener) of each regular file; UnsafePath for a link, device or unsafe name anywhere."""
    found: list[tuple[PurePosixPath, int, Any]] = []
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        for info in zf.infolist():
            if info.is_dir():
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no type recorded (a plain file)
            if kind and kind != stat.S_IFREG:
                raise UnsafePath(f"archive member {info.filename[:200]!r} is not a regular file")
            found.append((safe_relative(info.filename), info.file_size, lambda info=info: zf.open(info)))
        return found
    if tarfile.is_tarfile(archive):
        tf = tarfile.open(archive)  # noqa: SIM115  # members are read after this returns
        for member in tf.getmembers():
            if member.isdir():
                continue
            if not member.isfile():
                raise UnsafePath(f"archive member {member.name[:200]!r} is a link or a device")
            found.append((safe_relative(member.name), member.size, lambda m=member: _tar_reader(tf, m)))
        return found
    raise ValueError("the archive is neither a tar nor a zip file")


def _tar_reader(tf: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    reader = tf.extractfile(member)
    if reader is None:
        raise UnsafePath(f"archive member {member.name!r} has no content")
    return reader


def _now() -> float:
    import time

    return time.perf_counter()
