"""OUT/manifest.jsonl of a generated set: one JSON object per job, written so a crash loses nothing.

While generating, process r appends to OUT/manifest.shard-<r>.jsonl (append + fsync after the job's
files are in place, so a record always means its files exist). At the end the main process merges
the shards into manifest.jsonl (atomically) and removes them. Readers are forgiving: a line torn by
a kill, or any line that is not a JSON object with an "id", is skipped, and the job it described is
simply done again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..io import atomic_write_text

MANIFEST = "manifest.jsonl"
SHARD_GLOB = "manifest.shard-*.jsonl"


def shard_path(out: Path, rank: int) -> Path:
    return out / f"manifest.shard-{rank}.jsonl"


def _read_lines(path: Path) -> Iterable[dict]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    for line in raw.splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a torn last line, or a stray edit: that job is redone
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            yield record


def read_records(out: str | os.PathLike) -> dict[str, dict]:
    """id -> record from manifest.jsonl and every shard (shards are newer, so they win)."""
    out = Path(out)
    records: dict[str, dict] = {}
    for path in [out / MANIFEST, *sorted(out.glob(SHARD_GLOB))]:
        for record in _read_lines(path):
            records[record["id"]] = record
    return records


def append_record(path: Path, record: dict) -> None:
    """Append one line durably; first closes a line left unterminated by a killed writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "ab+") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def merge(out: str | os.PathLike, is_valid: Callable[[dict], bool], order: dict[str, int] | None = None) -> list[dict]:
    """Rewrite manifest.jsonl from itself and the shards: records whose files are present (`is_valid`),
    in plan order (`order`: id -> index; unknown ids after, by id); then delete the shards."""
    out = Path(out)
    order = order or {}
    records = [r for r in read_records(out).values() if is_valid(r)]
    records.sort(key=lambda r: (order.get(r["id"], len(order)), r["id"]))
    atomic_write_text(out / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    for shard in out.glob(SHARD_GLOB):
        shard.unlink(missing_ok=True)
    return records
