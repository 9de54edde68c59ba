"""The output bag of `glassgem predict BAG --out OUT`: a rosbag2 folder with MCAP storage, written in parts.

OUT holds OUT_0.mcap, OUT_1.mcap, ... (a split bag, as `ros2 bag record --max-bag-size` writes) and a
metadata.yaml that lists only parts that are closed. A part is written by rosbags' Writer into a hidden
folder inside OUT, closed (an MCAP file with its summary), moved beside the others, and only then named in
metadata.yaml, which is replaced atomically. So at every moment OUT either has no metadata.yaml yet (the
first moments of a run) or is a bag that opens, holding every frame up to the last checkpoint.

metadata.yaml's custom_data carries the run's resume state (`glassgem.*` keys): what was read (bag, topic,
--every, --overlay, --copy-topics), how many input messages are written (`glassgem.consumed`), how many
masks, and whether the run finished. `--resume` continues from there; other options refuse to mix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..errors import DataError
from ..io import atomic_write_text

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.rosbag2 import Writer

PREFIX = "glassgem."
METADATA = "metadata.yaml"
PART_DIR = ".part.tmp"  # the part being written (a hidden folder inside OUT)


def _info(folder: Path) -> dict:
    return yaml.safe_load((folder / METADATA).read_text())["rosbag2_bagfile_information"]


def read_state(out: Path) -> dict[str, str] | None:
    """The glassgem.* resume state of an output bag (keys without the prefix), or None without metadata.yaml.
    DataError for a folder whose metadata.yaml is not a glassgem output bag."""
    if not (out / METADATA).is_file():
        return None
    try:
        custom = _info(out).get("custom_data") or {}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, OSError) as e:
        raise DataError(
            f"--out {out}: its {METADATA} cannot be read ({type(e).__name__}); choose another --out"
        ) from None
    state = {k[len(PREFIX) :]: str(v) for k, v in custom.items() if str(k).startswith(PREFIX)}
    if "consumed" not in state:
        raise DataError(f"--out {out}: a bag that glassgem predict did not write; choose another --out")
    return state


def _append(info: dict | None, part: dict) -> dict:
    """The metadata of a bag with one more part: files listed in order, message counts summed per topic.
    An empty bag (its first part without messages) is replaced by the part."""
    if info is None or not info["message_count"]:
        return part
    merged = dict(info)
    start = min(info["starting_time"]["nanoseconds_since_epoch"], part["starting_time"]["nanoseconds_since_epoch"])
    end = max(s["starting_time"]["nanoseconds_since_epoch"] + s["duration"]["nanoseconds"] for s in (info, part))
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in part["topics_with_message_count"]}
    topics = [
        {**t, "message_count": t["message_count"] + counts.pop(t["topic_metadata"]["name"], 0)}
        for t in info["topics_with_message_count"]
    ]
    topics += [t for t in part["topics_with_message_count"] if t["topic_metadata"]["name"] in counts]
    merged.update(
        {
            "relative_file_paths": info["relative_file_paths"] + part["relative_file_paths"],
            "files": info["files"] + part["files"],
            "message_count": info["message_count"] + part["message_count"],
            "starting_time": {"nanoseconds_since_epoch": start},
            "duration": {"nanoseconds": max(0, end - start)},
            "topics_with_message_count": topics,
        }
    )
    return merged


class OutputBag:
    """Writes the output bag part by part. `topics`: (topic, message type, definition, RIHS01 hash) of
    every topic it will hold; write() takes serialized CDR messages of those topics."""

    def __init__(self, out: Path, topics: list[tuple[str, str, str, str]], state: dict[str, str]) -> None:
        self.out, self.topics, self.state = Path(out), topics, dict(state)
        self.info: dict | None = _info(self.out) if (self.out / METADATA).is_file() else None
        self.writer: Writer | None = None
        self.connections: dict[str, Connection] = {}
        self.pending = 0  # messages in the part being written

    def _open_part(self) -> Writer:
        from rosbags.rosbag2 import StoragePlugin, Writer

        tmp = self.out / PART_DIR
        shutil.rmtree(tmp, ignore_errors=True)
        writer = Writer(tmp, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        self.writer = writer
        self.connections = {
            topic: writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
            for topic, msgtype, msgdef, rihs01 in self.topics
        }
        return writer

    def write(self, topic: str, timestamp: int, data: bytes) -> None:
        writer = self.writer if self.writer is not None else self._open_part()
        writer.write(self.connections[topic], int(timestamp), data)
        self.pending += 1

    def checkpoint(self, **state) -> None:
        """Close the part being written (an empty one if the bag has none yet) and name it in metadata.yaml,
        with the resume state updated by `state`."""
        self.state.update({k: str(v) for k, v in state.items()})
        if self.writer is None and self.info is None:
            self._open_part()
        old_files = set(self.info["relative_file_paths"]) if self.info else set()
        if self.writer is not None:
            tmp = self.out / PART_DIR
            self.writer.close()
            self.writer = None
            part = _info(tmp)
            # the n-th part is OUT_n.mcap; a first part with messages replaces an empty one in place
            name = f"{self.out.name}_{len(old_files) if self.info and self.info['message_count'] else 0}.mcap"
            os.replace(tmp / part["relative_file_paths"][0], self.out / name)
            shutil.rmtree(tmp, ignore_errors=True)
            part["relative_file_paths"] = [name]
            part["files"][0]["path"] = name
            self.info = _append(self.info, part)
            self.pending = 0
        assert self.info is not None  # a bag without metadata had a (maybe empty) part written just above
        self.info["custom_data"] = {PREFIX + k: v for k, v in self.state.items()}
        atomic_write_text(self.out / METADATA, yaml.safe_dump({"rosbag2_bagfile_information": self.info}))
        for gone in old_files - set(self.info["relative_file_paths"]):
            (self.out / gone).unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop the part being written (what a killed run leaves is removed the same way on --resume)."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        shutil.rmtree(self.out / PART_DIR, ignore_errors=True)


__all__ = ["METADATA", "OutputBag", "PART_DIR", "read_state"]
