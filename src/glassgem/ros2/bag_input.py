"""Reading bags for `glassgem predict BAG`: which paths are bags, the image topic, the message stream.

A bag is a rosbag2 folder (metadata.yaml; MCAP or SQLite storage), a single `.mcap` or `.db3` file, or a
ROS 1 `.bag` file; the `rosbags` package (the `ros` extra) reads them all. Every problem with the bag is a
DataError naming it: not there, truncated or corrupt, no image topic, several image topics and no --topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, GlassgemError
from .messages import IMAGE_TYPES, UnsupportedEncoding, message_to_rgb

BAG_SUFFIXES = (".mcap", ".db3", ".bag")
INSTALL_HINT = 'pip install -e ".[ros]" in your glassgem clone (or pip install rosbags)'
MIXED_TYPES = "several message types"  # the type of a topic whose connections disagree (rosbags: None)


def is_bag(path: str | Path) -> bool:
    """A rosbag2 folder (it holds metadata.yaml) or a bag file, by its suffix."""
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").is_file()) or (p.suffix.lower() in BAG_SUFFIXES and not p.is_dir())


def require_rosbags():
    """The rosbags package, or a GlassgemError saying how to install it."""
    try:
        import rosbags.highlevel
    except ImportError:
        raise GlassgemError(
            f"reading ROS bags needs the rosbags package, which is not installed: {INSTALL_HINT}"
        ) from None
    return rosbags


def _bag_errors() -> tuple[type[BaseException], ...]:
    """What rosbags (and the storage libraries under it) raise for a bag it cannot read."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    from rosbags.serde import SerdeError

    return (
        AnyReaderError,
        Reader1Error,
        Reader2Error,
        SerdeError,
        KeyError,
        ValueError,
        IndexError,
        EOFError,
        OSError,
        AssertionError,
        RuntimeError,
    )


class BagInput:
    """An open bag, its image topic and the connections whose messages are read (image topic + copies)."""

    def __init__(self, path: str | Path, topic: str | None = None, copy_topics: Sequence[str] = ()) -> None:
        require_rosbags()
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such bag (a rosbag2 folder, or a .mcap, .db3 or .bag file)")
        # bags recorded without type definitions (rosbag2 SQLite before Iron) are read with the standard types
        try:
            self.reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            self.reader.open()
        except _bag_errors() as e:  # FileNotFoundError among them (an OSError)
            raise DataError(
                f"{self.path}: cannot open this bag, it may be truncated or corrupt ({type(e).__name__}: {e})"
            ) from None
        try:
            self.topics = {name: info.msgtype or MIXED_TYPES for name, info in self.reader.topics.items()}
            self.topic = self._image_topic(topic)
            self.msgtype = self.topics[self.topic]
            self.count = self.reader.topics[self.topic].msgcount
            self.copied = self._copied(copy_topics)
        except BaseException:
            self.close()
            raise

    @property
    def ros1(self) -> bool:
        return not self.reader.is2

    def _describe(self, names: Sequence[str]) -> str:
        return ", ".join(f"{n} ({self.topics[n]})" for n in names) or "none"

    def _image_topic(self, topic: str | None) -> str:
        images = sorted(n for n, t in self.topics.items() if t in IMAGE_TYPES)
        if topic is not None:
            if topic not in self.topics:
                raise DataError(
                    f"{self.path}: no topic {topic} in this bag (image topics: {', '.join(images) or 'none'})"
                )
            if self.topics[topic] not in IMAGE_TYPES:
                raise DataError(
                    f"--topic {topic}: a {self.topics[topic]} topic, not sensor_msgs/Image or "
                    "sensor_msgs/CompressedImage"
                )
            return topic
        if not images:
            raise DataError(
                f"{self.path}: no sensor_msgs/Image or CompressedImage topic in this bag (topics: "
                f"{self._describe(sorted(self.topics))})"
            )
        if len(images) > 1:
            raise DataError(f"{self.path}: {len(images)} image topics ({', '.join(images)}): choose one with --topic")
        return images[0]

    def _copied(self, copy_topics: Sequence[str]) -> list[str]:
        names = sorted(self.topics) if list(copy_topics) == ["all"] else list(dict.fromkeys(copy_topics))
        unknown = [n for n in names if n not in self.topics]
        if unknown:
            raise DataError(
                f"--copy-topics: no topic {', '.join(unknown)} in {self.path} (topics: "
                f"{', '.join(sorted(self.topics))})"
            )
        mixed = [n for n in names if self.topics[n] == MIXED_TYPES]
        if mixed:
            raise DataError(f"--copy-topics: {', '.join(mixed)} in {self.path} hold messages of several types")
        if names and self.ros1:
            raise DataError(
                f"--copy-topics: {self.path} is a ROS 1 bag; copying its messages into a ROS 2 bag "
                "is not supported: leave out --copy-topics"
            )
        return names

    def definition(self, topic: str) -> tuple[str, str, str]:
        """(message type, its definition text, its RIHS01 hash) of a topic, for writing it into another bag."""
        msgtype = self.topics[topic]
        store = self.reader.typestore
        msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
        return msgtype, msgdef, store.hash_rihs01(msgtype)

    def messages(self, skip: int = 0) -> Iterator[tuple[int, str, int, Any]]:
        """(position, topic, log time in ns, raw bytes) of the image topic's and the copied topics' messages,
        in log-time order; the first `skip` are passed over. A bag that breaks part-way raises DataError."""
        wanted = {self.topic, *self.copied}
        connections = [c for c in self.reader.connections if c.topic in wanted]
        position = 0
        try:
            for connection, timestamp, raw in self.reader.messages(connections=connections):
                if position >= skip:
                    yield position, connection.topic, timestamp, raw
                position += 1
        except _bag_errors() as e:
            raise DataError(
                f"{self.path}: cannot read message {position} of this bag, it may be truncated or "
                f"corrupt ({type(e).__name__}: {e})"
            ) from None

    def deserialize(self, raw: Any, topic: str) -> Any:
        """A raw message of `topic` -> its rosbags message object; DataError if it does not deserialize."""
        try:
            return self.reader.deserialize(raw, self.topics[topic])
        except _bag_errors() as e:
            raise DataError(f"a {self.topics[topic]} message of {topic} does not deserialize ({e})") from None

    def check_encoding(self) -> None:
        """Raise DataError (one line, naming the bag, topic and encoding) if the first frame's encoding or
        compressed format is one glassgem cannot read; a first frame that is merely corrupt passes."""
        for position, topic, _, raw in self.messages():
            if topic != self.topic:
                continue
            try:
                message_to_rgb(self.deserialize(raw, topic), self.msgtype)
            except UnsupportedEncoding as e:
                raise DataError(f"{self.path}: {topic}, message {position}: {e}") from None
            except DataError:
                pass
            return

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # closing a half-open reader: nothing left to release
            pass


__all__ = ["BAG_SUFFIXES", "BagInput", "INSTALL_HINT", "is_bag", "require_rosbags"]
