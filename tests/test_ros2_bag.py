"""`glassgem predict BAG --out OUT_BAG` (glassgem.ros2.bag_*): round trips through bags made here with rosbags
(raw and compressed encodings), the output bag's form (rosbags and mcap read it), --every/--max-frames,
--copy-topics, every bad case as one line, and a run killed part-way then resumed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glassgem import GEM
from glassgem.cli import main
from glassgem.errors import DataError
from glassgem.inference.files import collect_inputs
from glassgem.inference.predict import predict_files
from glassgem.ros2.bag_output import PART_DIR
from glassgem.ros2.bag_predict import MASK_TOPIC, OVERLAY_TOPIC, predict_bag
from glassgem.ros2.messages import image_array
from ros_bags import H, String, W, compressed_image, frames, image_bag, raw_image, read_topic, write_bag

TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def debug_weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = GEM.from_config("debug")
    with torch.no_grad():  # random heads give one class everywhere; shift the glass logit so both occur
        model.decoder.class_embed.bias[1] += 2.0
    return str(model.save_pretrained(tmp_path_factory.mktemp("w") / "debug"))


class RedScorer:
    """Glass where the squashed frame's red channel > 127.5; counts the frames it scores."""

    input_size = 64

    def __init__(self) -> None:
        self.scored = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.scored += len(images)
        return torch.stack([torch.full_like(images[:, 0], 127.5), images[:, 0]], dim=1)


def _predict(bag: Path, out: Path, weights: str, *extra: str) -> int:
    return main(["predict", str(bag), "--out", str(out), "--weights", weights, "--quiet", *extra])


def _masks(out: Path) -> list[np.ndarray]:
    return [image_array(m) for _, m in read_topic(out, MASK_TOPIC)]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "mono8", "mono16", "jpeg", "png"])
def test_every_frame_gets_one_mask_with_its_header_size_and_mono8(tmp_path, debug_weights, encoding):
    bag = image_bag(tmp_path / "in", n=4, encoding=encoding)
    assert _predict(bag, tmp_path / "out", debug_weights) == 0
    inputs = read_topic(bag, TOPIC)
    masks = read_topic(tmp_path / "out", MASK_TOPIC)
    assert len(masks) == len(inputs) == 4
    for (t_in, m_in), (t_out, m) in zip(inputs, masks):
        assert t_out == t_in
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (m_in.header.stamp.sec, m_in.header.stamp.nanosec)
        assert m.header.frame_id == m_in.header.frame_id == "camera_optical"
        assert (m.height, m.width, m.encoding, m.step) == (H, W, "mono8", W)
        assert set(np.unique(m.data)) <= {0, 255}
    assert not read_topic(tmp_path / "out", TOPIC)  # other topics stay out
    assert not read_topic(tmp_path / "out", OVERLAY_TOPIC)


def test_masks_are_the_photo_predictions_whatever_the_encoding(tmp_path):
    """rgb8, bgr8, rgba8 and png bags give the photo path's masks of the same pixels (a scorer that sees the red
    channel: a swapped channel order would show); mono8 and mono16 bags agree with each other."""
    imgs = frames(3)
    for i, f in enumerate(imgs):
        Image.fromarray(f).save(tmp_path / f"{i}.png")
    photos = collect_inputs([str(tmp_path / f"{i}.png") for i in range(3)])
    predict_files(photos, tmp_path / "photos", RedScorer(), progress=False)
    expected = [np.asarray(Image.open(tmp_path / "photos" / f"{i}.png")) for i in range(3)]
    assert all(m.any() and not m.all() for m in expected)  # the moving red square: some glass, not all
    assert not np.array_equal(expected[0], expected[2])
    for encoding in ("rgb8", "bgr8", "rgba8", "png"):
        bag = image_bag(tmp_path / f"in_{encoding}", n=3, encoding=encoding)
        predict_bag(bag, tmp_path / f"out_{encoding}", RedScorer(), progress=False)
        for got, want in zip(_masks(tmp_path / f"out_{encoding}"), expected, strict=True):
            assert np.array_equal(got, want), encoding
    gray = []
    for encoding in ("mono8", "mono16"):
        bag = image_bag(tmp_path / f"in_{encoding}", n=3, encoding=encoding)
        predict_bag(bag, tmp_path / f"out_{encoding}", RedScorer(), threshold=0.45, progress=False)
        gray.append(_masks(tmp_path / f"out_{encoding}"))
    assert any(m.any() and not m.all() for m in gray[0])
    assert all(np.array_equal(a, b) for a, b in zip(*gray, strict=True))


def test_overlay_topic_and_mcap_files_read_by_the_mcap_library(tmp_path, debug_weights):
    from mcap.reader import make_reader

    bag = image_bag(tmp_path / "in", n=3, encoding="jpeg")
    assert _predict(bag, tmp_path / "out", debug_weights, "--overlay") == 0
    overlays = read_topic(tmp_path / "out", OVERLAY_TOPIC)
    assert [(m.height, m.width, m.encoding) for _, m in overlays] == [(H, W, "rgb8")] * 3
    assert [m.header.stamp.sec for _, m in overlays] == [m.header.stamp.sec for _, m in read_topic(bag, TOPIC)]
    counts: dict[str, int] = {}
    for file in sorted((tmp_path / "out").glob("*.mcap")):
        with open(file, "rb") as f:
            for schema, channel, message in make_reader(f).iter_messages():
                assert schema.name == "sensor_msgs/msg/Image" and channel.message_encoding == "cdr"
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
    assert counts == {MASK_TOPIC: 3, OVERLAY_TOPIC: 3}


def test_every_max_frames_and_copy_topics(tmp_path, debug_weights):
    imgs = frames(7)
    bag = write_bag(
        tmp_path / "in",
        {
            TOPIC: [raw_image(f, "rgb8", i) for i, f in enumerate(imgs)],
            "/chatter": [String(data=f"hello {i}") for i in range(7)],
        },
    )
    assert _predict(bag, tmp_path / "every", debug_weights, "--every", "3") == 0
    assert [m.header.stamp.sec % 100 for _, m in read_topic(tmp_path / "every", MASK_TOPIC)] == [0, 3, 6]
    assert not read_topic(tmp_path / "every", "/chatter")
    assert _predict(bag, tmp_path / "max", debug_weights, "--max-frames", "2", "--copy-topics", "/chatter") == 0
    assert len(read_topic(tmp_path / "max", MASK_TOPIC)) == 2
    assert [m.data for _, m in read_topic(tmp_path / "max", "/chatter")] == ["hello 0", "hello 1"]
    assert _predict(bag, tmp_path / "all", debug_weights, "--copy-topics", "all") == 0
    copied = read_topic(tmp_path / "all", TOPIC)
    assert len(copied) == 7 and np.array_equal(image_array(copied[5][1]), imgs[5])
    assert len(read_topic(tmp_path / "all", "/chatter")) == 7


def _one_line_error(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("glassgem: error:"), err
    for word in words:
        assert word in err, err
    return err


def test_bad_bags_give_one_line_errors(tmp_path, capsys, debug_weights):
    w = ["--weights", debug_weights]
    chatter = write_bag(tmp_path / "chatter", {"/chatter": [String(data="hi")]})
    _one_line_error(
        capsys,
        ["predict", str(chatter), "--out", str(tmp_path / "o1"), *w],
        "no sensor_msgs/Image",
        "/chatter (std_msgs/msg/String)",
    )
    two = write_bag(
        tmp_path / "two",
        {
            "/left/image_raw": [raw_image(frames(1)[0], "rgb8")],
            "/right/image_raw/compressed": [compressed_image(frames(1)[0], "jpeg")],
        },
    )
    _one_line_error(
        capsys,
        ["predict", str(two), "--out", str(tmp_path / "o2"), *w],
        "2 image topics",
        "/left/image_raw",
        "/right/image_raw/compressed",
        "--topic",
    )
    assert main(["predict", str(two), "--out", str(tmp_path / "o2"), "--topic", "/left/image_raw", "--quiet", *w]) == 0
    _one_line_error(capsys, ["predict", str(two), "--out", str(tmp_path / "o3"), "--topic", "/nope", *w], "/nope")
    bayer = write_bag(tmp_path / "bayer", {TOPIC: [raw_image(frames(1)[0], "bayer_rggb8")]})
    _one_line_error(capsys, ["predict", str(bayer), "--out", str(tmp_path / "o4"), *w], "'bayer_rggb8'", "mono16")
    depth = write_bag(tmp_path / "depth", {TOPIC: [compressed_image(frames(1)[0], "png")]})
    depth_msg = read_topic(depth, TOPIC)[0][1]
    depth_msg.format = "16UC1; compressedDepth"
    depth = write_bag(tmp_path / "depth2", {TOPIC: [depth_msg]})
    _one_line_error(capsys, ["predict", str(depth), "--out", str(tmp_path / "o5"), *w], "compressedDepth")
    assert not (tmp_path / "o4" / "metadata.yaml").exists() or not read_topic(tmp_path / "o4", MASK_TOPIC)


def test_corrupt_and_misplaced_bags_give_one_line_errors(tmp_path, capsys, debug_weights):
    w = ["--weights", debug_weights]
    good = image_bag(tmp_path / "good", n=3)
    data = next(good.glob("*.mcap")).read_bytes()
    for cut in (30, len(data) // 2, len(data) - 10):
        (tmp_path / f"cut{cut}.mcap").write_bytes(data[:cut])
        _one_line_error(
            capsys,
            ["predict", str(tmp_path / f"cut{cut}.mcap"), "--out", str(tmp_path / f"o{cut}"), *w],
            f"cut{cut}.mcap",
            "truncated or corrupt",
        )
    (tmp_path / "junk.mcap").write_bytes(b"not a bag" * 50)
    _one_line_error(capsys, ["predict", str(tmp_path / "junk.mcap"), "--out", str(tmp_path / "oj"), *w], "junk.mcap")
    _one_line_error(capsys, ["predict", str(tmp_path / "gone.mcap"), "--out", str(tmp_path / "og"), *w], "gone.mcap")
    _one_line_error(capsys, ["predict", str(good), "--out", str(good / "masks"), *w], "inside")
    assert main(["predict", str(good), "--out", str(tmp_path / "out"), "--quiet", *w]) == 0
    _one_line_error(capsys, ["predict", str(good), "--out", str(tmp_path / "out"), *w], "already there", "--resume")
    _one_line_error(
        capsys, ["predict", str(good), "--out", str(tmp_path / "out"), "--resume", "--every", "2", *w], "every"
    )
    _one_line_error(
        capsys, ["predict", str(good), "--out", str(tmp_path / "o7"), "--copy-topics", "/nope", *w], "/nope"
    )
    _one_line_error(
        capsys, ["predict", str(good), str(tmp_path / "cut30.mcap"), "--out", str(tmp_path / "o8"), *w], "on its own"
    )
    assert data == next(good.glob("*.mcap")).read_bytes()  # the input is never touched


def test_a_frame_that_does_not_decode_is_skipped_and_reported(tmp_path, capsys):
    msgs = [compressed_image(f, "jpeg", i) for i, f in enumerate(frames(4))]
    msgs[2].data = msgs[2].data[:40]  # a truncated JPEG
    bag = write_bag(tmp_path / "in", {TOPIC: msgs})
    lines: list[str] = []
    summary = predict_bag(bag, tmp_path / "out", RedScorer(), progress=False, report=lines.append)
    assert summary.frames == 3 and len(summary.skipped) == 1
    assert len(lines) == 1 and "message 2" in lines[0]
    assert [m.header.stamp.sec % 100 for _, m in read_topic(tmp_path / "out", MASK_TOPIC)] == [0, 1, 3]


KILL_SCRIPT = """
import os, sys, torch
from glassgem.ros2 import bag_output
from glassgem.ros2.bag_predict import predict_bag
writes = 0
real_write = bag_output.OutputBag.write
def write(self, *a):
    global writes
    writes += 1
    if writes == 6:
        os._exit(9)  # no cleanup at all, as a kill
    real_write(self, *a)
bag_output.OutputBag.write = write
class Red:
    input_size = 64
    def __call__(self, x):
        return torch.stack([torch.full_like(x[:, 0], 127.5), x[:, 0]], dim=1)
predict_bag(sys.argv[1], sys.argv[2], Red(), batch_size=2, progress=False, checkpoint_s=0)
"""


def test_a_killed_run_leaves_a_bag_that_opens_and_resume_finishes_it(tmp_path):
    bag = image_bag(tmp_path / "in", n=10, encoding="png")
    out = tmp_path / "out"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    r = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(bag), str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 9, r.stderr
    assert (out / PART_DIR).is_dir()  # the part being written when it died
    assert len(read_topic(out, MASK_TOPIC)) == 4  # two closed parts of 2 frames open as a bag
    with pytest.raises(DataError, match="already there"):
        predict_bag(bag, out, RedScorer(), progress=False)
    scorer = RedScorer()
    summary = predict_bag(bag, out, scorer, batch_size=2, progress=False, resume=True)
    assert scorer.scored == 6 and summary.resumed == 4 and summary.frames == 10
    assert not (out / PART_DIR).exists()
    fresh = RedScorer()
    predict_bag(bag, tmp_path / "fresh", fresh, progress=False)
    inputs, masks = read_topic(bag, TOPIC), read_topic(out, MASK_TOPIC)
    assert [t for t, _ in masks] == [t for t, _ in inputs]
    assert all(np.array_equal(image_array(a), b) for (_, a), b in zip(masks, _masks(tmp_path / "fresh")))
    again = RedScorer()
    assert predict_bag(bag, out, again, progress=False, resume=True).frames == 10 and again.scored == 0


def test_a_ros1_bag_gives_masks_with_its_headers(tmp_path, capsys):
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    types = store.types
    image = types["sensor_msgs/msg/Image"]
    with Writer(tmp_path / "run.bag") as w:
        conn = w.add_connection(TOPIC, image.__msgtype__, typestore=store)
        for i, f in enumerate(frames(3)):
            m = raw_image(f, "bgr8", i)
            stamp = types["builtin_interfaces/msg/Time"](sec=m.header.stamp.sec, nanosec=m.header.stamp.nanosec)
            msg = image(
                header=types["std_msgs/msg/Header"](seq=i, stamp=stamp, frame_id="cam1"),
                height=H,
                width=W,
                encoding="bgr8",
                is_bigendian=0,
                step=m.step,
                data=m.data,
            )
            w.write(conn, 5_000 + i, store.serialize_ros1(msg, image.__msgtype__))
    summary = predict_bag(tmp_path / "run.bag", tmp_path / "out", RedScorer(), progress=False)
    masks = read_topic(tmp_path / "out", MASK_TOPIC)
    assert summary.frames == 3 and [t for t, _ in masks] == [5_000, 5_001, 5_002]
    assert [(m.header.frame_id, m.header.stamp.sec % 100) for _, m in masks] == [("cam1", 0), ("cam1", 1), ("cam1", 2)]
    with pytest.raises(DataError, match="ROS 1 bag"):
        predict_bag(tmp_path / "run.bag", tmp_path / "out2", RedScorer(), copy_topics=["all"], progress=False)
