"""ROS image messages <-> numpy arrays, for any message object with the standard fields.

`sensor_msgs/Image` and `sensor_msgs/CompressedImage` are read through their attributes only (`height`,
`width`, `encoding`, `is_bigendian`, `step`, `data`; `format`, `data`), so the same code reads the message
classes of `rosbags` (bags, the tests) and of `rclpy` (the live node). The outputs are plain field dicts
(`mono8_fields`, `rgb8_fields`) that either side turns into its own message class with the input's header.

Raw encodings read: rgb8, bgr8, rgba8, bgra8, mono8, mono16 and their OpenCV spellings 8UC1 (mono8),
8UC3 (bgr8), 8UC4 (bgra8), 16UC1 (mono16). Alpha is dropped; 16-bit values are scaled from 0..65535 to
0..255 (as glassgem.io reads 16-bit image files). Compressed formats read: JPEG and PNG (the `format`
field names them, as image_transport writes it: "jpeg", "png", "bgr8; jpeg compressed bgr8", ...).
"""

from __future__ import annotations

import array
import io
from typing import Any

import numpy as np
from PIL import Image as PILImage

from ..errors import DataError
from ..io import pil_to_rgb

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)

# encoding -> (channels, bytes per channel, channel order of the output RGB: indices into the pixel)
_RAW = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "8uc3": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "8uc4": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, (0, 0, 0)),
    "8uc1": (1, 1, (0, 0, 0)),
    "mono16": (1, 2, (0, 0, 0)),
    "16uc1": (1, 2, (0, 0, 0)),
}
RAW_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "8UC4", "16UC1")
COMPRESSED_FORMATS = ("jpeg", "png")


class UnsupportedEncoding(DataError):
    """An image encoding or compressed format that glassgem cannot read (every frame of a topic shares it)."""


def _bytes(data: Any) -> np.ndarray:
    """A message's `data` (numpy array, bytes, array.array, list) -> uint8 array, without a copy where possible."""
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def raw_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image -> uint8 RGB H x W x 3. Raises UnsupportedEncoding for another encoding,
    DataError for data that does not fit the stated size."""
    encoding = str(msg.encoding)
    if encoding.lower() not in _RAW:
        raise UnsupportedEncoding(
            f"unsupported image encoding {encoding!r} (glassgem reads {', '.join(RAW_ENCODINGS)})"
        )
    channels, depth, order = _RAW[encoding.lower()]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h < 1 or w < 1:
        raise DataError(f"empty {encoding} image ({w}x{h})")
    data = _bytes(msg.data)
    row = w * channels * depth
    if step < row or data.size < step * (h - 1) + row:
        raise DataError(
            f"{encoding} image {w}x{h}: {data.size} data bytes with step {step} do not hold {h} rows of {row} bytes"
        )
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, row), strides=(step, 1))
    if depth == 2:
        dtype = ">u2" if int(msg.is_bigendian) else "<u2"
        values = np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels)
        pixels = (values.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    else:
        pixels = rows.reshape(h, w, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG or PNG) -> uint8 RGB H x W x 3. Raises UnsupportedEncoding for
    another format, DataError for data that does not decode."""
    fmt = str(msg.format)
    low = fmt.lower()
    if "compresseddepth" in low or not any(f in low for f in ("jpeg", "jpg", "png")):
        raise UnsupportedEncoding(
            f"unsupported compressed image format {fmt!r} (glassgem reads {' and '.join(COMPRESSED_FORMATS)})"
        )
    try:
        with PILImage.open(io.BytesIO(_bytes(msg.data).tobytes())) as img:
            img.load()
            return pil_to_rgb(img)
    except Exception as e:  # PIL raises many types for truncated/corrupt data
        raise DataError(f"{fmt} data does not decode ({type(e).__name__}: {e})") from None


def message_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """An Image or CompressedImage message (`msgtype` says which) -> uint8 RGB H x W x 3."""
    if msgtype == COMPRESSED:
        return compressed_to_rgb(msg)
    if msgtype == IMAGE:
        return raw_to_rgb(msg)
    raise UnsupportedEncoding(f"{msgtype} is not an image message ({' or '.join(IMAGE_TYPES)})")


def is_compressed_topic(topic: str) -> bool:
    """image_transport's naming: a compressed stream is published on <base>/compressed."""
    return topic.rstrip("/").endswith("/compressed")


def mono8_fields(mask: np.ndarray) -> dict[str, Any]:
    """A {0,1} (or 0/255) H x W mask -> the fields of a mono8 sensor_msgs/Image (0/255), header aside."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask is H x W, got shape {m.shape}")
    data = np.where(m > 0, 255, 0).astype(np.uint8)
    h, w = data.shape
    return {"height": h, "width": w, "encoding": "mono8", "is_bigendian": 0, "step": w, "data": data.reshape(-1)}


def rgb8_fields(rgb: np.ndarray) -> dict[str, Any]:
    """A uint8 H x W x 3 RGB picture -> the fields of an rgb8 sensor_msgs/Image, header aside."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"an rgb8 picture is H x W x 3, got shape {a.shape}")
    h, w = a.shape[:2]
    return {"height": h, "width": w, "encoding": "rgb8", "is_bigendian": 0, "step": 3 * w, "data": a.reshape(-1)}


def build_image(cls: Any, header: Any, fields: dict[str, Any], as_array: bool = False) -> Any:
    """A sensor_msgs/Image of class `cls` (rosbags' or rclpy's) with `header` and `fields` (mono8_fields,
    rgb8_fields). `as_array`: data as array.array('B'), the type rclpy's uint8[] fields take, instead of
    the numpy array rosbags' classes take."""
    values = dict(fields)
    if as_array:
        values["data"] = array.array("B", np.asarray(fields["data"], dtype=np.uint8).tobytes())
    return cls(header=header, **values)


def image_array(msg: Any) -> np.ndarray:
    """A mono8 or rgb8 sensor_msgs/Image (as glassgem writes them) -> H x W or H x W x 3 uint8 array."""
    return raw_to_rgb(msg)[:, :, 0] if str(msg.encoding) == "mono8" else raw_to_rgb(msg)


__all__ = [
    "COMPRESSED",
    "COMPRESSED_FORMATS",
    "IMAGE",
    "IMAGE_TYPES",
    "RAW_ENCODINGS",
    "UnsupportedEncoding",
    "build_image",
    "compressed_to_rgb",
    "image_array",
    "is_compressed_topic",
    "message_to_rgb",
    "mono8_fields",
    "raw_to_rgb",
    "rgb8_fields",
]
