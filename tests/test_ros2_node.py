"""glassgem.ros2 without ROS: image messages <-> arrays (rosbags' message classes), the per-frame logic the bag
path and the live node share, the node's parameters (its frame dropping and rate log: tests/test_stream.py), and
the one-line error of `glassgem ros2 node` where rclpy is missing."""

from __future__ import annotations

import array
import sys

import numpy as np
import pytest
import torch

from glassgem.cli import main
from glassgem.errors import ConfigError, DataError
from glassgem.inference.predictor import Predictor
from glassgem.overlay import overlay_mask
from glassgem.ros2.frames import FrameProcessor
from glassgem.ros2.messages import (
    COMPRESSED,
    IMAGE,
    UnsupportedEncoding,
    build_image,
    image_array,
    message_to_rgb,
    mono8_fields,
    raw_to_rgb,
)
from glassgem.ros2.node import NodeSettings
from ros_bags import STORE, Image, compressed_image, frames, header, raw_image

FRAME = frames(3)[2]


class RedScorer:
    input_size = 64

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.full_like(images[:, 0], 127.5), images[:, 0]], dim=1)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_decode_to_the_same_rgb(encoding):
    for pad in (0, 5):  # rows padded past width * channels: step says where the next row starts
        assert np.array_equal(raw_to_rgb(raw_image(FRAME, encoding, pad=pad)), FRAME)


def test_mono_encodings_opencv_names_and_big_endian():
    gray = FRAME.mean(axis=2).astype(np.uint8)
    assert np.array_equal(raw_to_rgb(raw_image(FRAME, "mono8")), np.dstack([gray] * 3))
    assert np.array_equal(raw_to_rgb(raw_image(FRAME, "mono16")), np.dstack([gray] * 3))
    msg = raw_image(FRAME, "mono16")
    big = msg.data.view("<u2").astype(">u2").view(np.uint8)
    msg.data, msg.is_bigendian = big, 1
    assert np.array_equal(raw_to_rgb(msg)[:, :, 0], gray)
    bgr = raw_image(FRAME, "bgr8")
    bgr.encoding = "8UC3"  # OpenCV's name: BGR order, as cv_bridge reads it
    assert np.array_equal(raw_to_rgb(bgr), FRAME)


def test_compressed_png_is_exact_and_jpeg_close():
    assert np.array_equal(message_to_rgb(compressed_image(FRAME, "png"), COMPRESSED), FRAME)
    jpeg = message_to_rgb(compressed_image(FRAME, "bgr8; jpeg compressed bgr8"), COMPRESSED)
    assert jpeg.shape == FRAME.shape and np.abs(jpeg.astype(int) - FRAME).mean() < 8


def test_unreadable_messages_name_the_problem():
    with pytest.raises(UnsupportedEncoding, match="'bayer_rggb8'"):
        raw_to_rgb(raw_image(FRAME, "bayer_rggb8"))
    with pytest.raises(UnsupportedEncoding, match="compressedDepth"):
        message_to_rgb(compressed_image(FRAME, "16UC1; compressedDepth"), COMPRESSED)
    short = raw_image(FRAME, "rgb8")
    short.data = short.data[:100]
    with pytest.raises(DataError, match="100 data bytes"):
        raw_to_rgb(short)
    broken = compressed_image(FRAME, "jpeg")
    broken.data = broken.data[:30]
    with pytest.raises(DataError, match="does not decode") as e:
        message_to_rgb(broken, COMPRESSED)
    assert not isinstance(e.value, UnsupportedEncoding)  # a bad frame is skipped, not the end of the run


def test_mask_messages_survive_cdr_and_carry_the_header():
    mask = (FRAME[:, :, 0] > 200).astype(np.uint8)
    msg = build_image(Image, header(4, "base_camera"), mono8_fields(mask))
    back = STORE.deserialize_cdr(STORE.serialize_cdr(msg, IMAGE), IMAGE)
    assert (back.encoding, back.height, back.width, back.step) == ("mono8", 32, 48, 48)
    assert back.header.frame_id == "base_camera" and back.header.stamp.sec == msg.header.stamp.sec
    assert np.array_equal(image_array(back), mask * 255)
    for_rclpy = build_image(Image, header(4), mono8_fields(mask), as_array=True)
    assert isinstance(for_rclpy.data, array.array) and bytes(for_rclpy.data) == (mask * 255).tobytes()


def test_frame_processor_gives_the_photo_paths_mask_and_an_overlay():
    processor = FrameProcessor(RedScorer(), overlay=True)
    out = processor.process(raw_image(FRAME, "bgr8"), IMAGE)
    expected = Predictor(RedScorer()).predict(FRAME).astype(np.uint8)  # the photo path's mask
    assert expected.any() and not expected.all()
    assert np.array_equal(out.mask, expected)
    assert out.mask_fields["encoding"] == "mono8" and np.array_equal(
        out.mask_fields["data"], expected.reshape(-1) * 255
    )
    over = out.overlay_fields["data"].reshape(32, 48, 3)
    assert out.overlay_fields["encoding"] == "rgb8"
    assert np.array_equal(over, overlay_mask(FRAME, expected))  # the photo path's overlay
    assert (over[expected == 1] != FRAME[expected == 1]).any()  # the glass is tinted
    batch = processor.masks(frames(3))
    assert len(batch) == 3 and np.array_equal(batch[2], expected)


def test_node_settings_parameters():
    assert NodeSettings().input_msgtype == IMAGE
    assert NodeSettings(input_topic="/cam/image_raw/compressed").input_msgtype == COMPRESSED
    assert NodeSettings(input_topic="/cam/compressed", input_type="raw").input_msgtype == IMAGE
    s = NodeSettings.from_parameters({"size": 320, "threshold": 0.3, "publish_overlay": True})
    assert (s.size, s.threshold, s.publish_overlay) == (320, 0.3, True)
    assert (
        NodeSettings().precision == "auto" and NodeSettings.from_parameters({"precision": "fp32"}).precision == "fp32"
    )
    for bad, word in (
        ({"size": 100}, "size"),
        ({"threshold": 1.5}, "threshold"),
        ({"input_type": "x"}, "input_type"),
        ({"precision": "int4"}, "precision"),
        ({"nope": 1}, "nope"),
    ):
        with pytest.raises(ConfigError, match=word):
            NodeSettings.from_parameters(bad)


def test_node_module_imports_without_ros_and_the_command_says_how_to_get_it(monkeypatch, capsys):
    import glassgem.ros2.node  # noqa: F401  (imports with no rclpy)

    assert "rclpy" not in sys.modules or sys.modules["rclpy"] is None
    monkeypatch.setitem(sys.modules, "rclpy", None)  # as where ROS 2 is not installed, even if it is here
    assert main(["ros2", "node", "--input-topic", "/cam/image_raw", "--ros-args", "-p", "threshold:=0.4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rclpy" in err and "ROS 2" in err and "setup.bash" in err
    assert main(["ros2", "node", "--threshold", "2"]) == 2
    assert "threshold" in capsys.readouterr().err
