"""Small ROS 2 bags and image messages made in the tests with rosbags (no ROS install)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]
String = STORE.types["std_msgs/msg/String"]
H, W = 32, 48


def frames(n: int, h: int = H, w: int = W) -> list[np.ndarray]:
    """RGB frames with a bright red square moving across colour ramps (a red-channel scorer sees it move)."""
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        img = np.stack([40 + 0 * x, 255 * y / h, 255 * x / w], axis=-1)
        img[h // 4 : h // 4 + h // 3, 3 * i : 3 * i + w // 3, 0] = 235
        out.append(img.astype(np.uint8))
    return out


def header(i: int, frame_id: str = "camera_optical") -> object:
    return Header(stamp=Time(sec=1_700_000_000 + i, nanosec=1000 * i + 7), frame_id=frame_id)


def raw_image(rgb: np.ndarray, encoding: str, i: int = 0, pad: int = 0) -> object:
    """An Image message of `rgb` in `encoding` (rgb8, bgr8, rgba8, bgra8, mono8, mono16 or any other name,
    sent as rgb8 bytes), each row followed by `pad` bytes."""
    gray = rgb.mean(axis=2).astype(np.uint8)
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)]),
        "mono8": gray,
        "mono16": gray.astype("<u2") * 257,
    }.get(encoding, rgb)
    h, w = rgb.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8)
    rows = np.hstack([rows, np.zeros((h, pad), np.uint8)])
    return Image(
        header=header(i),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=rows.shape[1],
        data=rows.reshape(-1),
    )


def compressed_image(rgb: np.ndarray, fmt: str, i: int = 0) -> object:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG" if fmt == "jpeg" else "PNG", quality=95)
    return CompressedImage(header=header(i), format=fmt, data=np.frombuffer(buf.getvalue(), np.uint8))


def write_bag(path: Path, topics: dict[str, Sequence[object]], storage: StoragePlugin = StoragePlugin.MCAP) -> Path:
    """A rosbag2 folder with the given messages per topic; message i of each topic is logged at i * 0.1 s."""
    with Writer(path, version=9, storage_plugin=storage) as w:
        conns = {t: w.add_connection(t, msgs[0].__msgtype__, typestore=STORE) for t, msgs in topics.items()}
        for i in range(max(len(m) for m in topics.values())):
            for t, msgs in topics.items():
                if i < len(msgs):
                    w.write(
                        conns[t],
                        1_700_000_000_000_000_000 + i * 100_000_000 + list(topics).index(t),
                        STORE.serialize_cdr(msgs[i], msgs[i].__msgtype__),
                    )
    return path


def image_bag(path: Path, n: int = 5, encoding: str = "rgb8", topic: str = "/camera/image_raw") -> Path:
    imgs = frames(n)
    if encoding in ("jpeg", "png"):
        msgs = [compressed_image(f, encoding, i) for i, f in enumerate(imgs)]
    else:
        msgs = [raw_image(f, encoding, i) for i, f in enumerate(imgs)]
    return write_bag(path, {topic: msgs})


def read_topic(bag: Path, topic: str) -> list[tuple[int, object]]:
    """(log time, message) of every message of `topic`, read back with rosbags."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as r:
        conns = [c for c in r.connections if c.topic == topic]
        return [(t, r.deserialize(raw, c.msgtype)) for c, t, raw in r.messages(connections=conns)] if conns else []
