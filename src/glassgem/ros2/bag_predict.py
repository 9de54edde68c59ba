"""`glassgem predict BAG --out OUT_BAG`: a glass mask for every frame of a bag's image topic.

Frames are read with rosbags (bag_input.py), decoded and squashed in the photo path's prefetch threads,
scored in batches by the same glassgem.Predictor as photos and videos (FrameProcessor, frames.py), and
written to a rosbag2 MCAP bag (bag_output.py):

    /glassgem/mask      sensor_msgs/Image, mono8 (0/255), the frame's size, the frame's header (stamp,
                        frame_id) and log time
    /glassgem/overlay   with --overlay: sensor_msgs/Image, rgb8, the frame with the glass tinted red
    other topics        only those --copy-topics names ("all": every topic), as they were

The bag is closed and its metadata.yaml rewritten at every checkpoint (every `checkpoint_s` seconds of
work and at the end): a killed run leaves a bag that opens, and `--resume` continues after its last
checkpoint. A frame that does not decode is reported and skipped; an encoding glassgem cannot read stops
the run with one line naming it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..inference.predict import prefetched
from ..inference.predictor import as_predictor
from ..inference.video import check_frame_options
from .bag_input import BagInput
from .bag_output import METADATA, PART_DIR, OutputBag, read_state
from .frames import FrameProcessor
from .messages import IMAGE, UnsupportedEncoding

MASK_TOPIC = "/glassgem/mask"
OVERLAY_TOPIC = "/glassgem/overlay"
# the options a resumed run must share with the run it continues
_KEPT = ("input", "topic", "every", "max_frames", "overlay", "copy_topics")


@dataclass
class BagSummary:
    bag: Path
    out: Path
    topic: str = ""
    frames: int = 0  # masks in the output bag, this run's and a resumed run's
    resumed: int = 0  # of those, masks an earlier run wrote
    skipped: list[str] = field(default_factory=list)  # frames that did not decode
    seconds: float = 0.0

    def line(self) -> str:
        scored = self.frames - self.resumed
        rate = scored / self.seconds if self.seconds > 0 else 0.0
        again = f", {self.resumed} already there" if self.resumed else ""
        bad = f"; {len(self.skipped)} frame(s) skipped" if self.skipped else ""
        return (
            f"{self.bag}: {self.frames} mask(s) of {self.topic} in {self.out} in {self.seconds:.1f} s "
            f"({rate:.2f} frames/s{again}){bad}"
        )


@dataclass
class _Item:
    position: int  # in the stream of read messages
    topic: str
    time: int
    raw: Any
    frame: bool = False  # an image message selected for a mask
    copy: bool = False
    images: int = 0  # image messages read up to and with this one (the resume state after it)
    selected: int = 0  # of those, frames selected for a mask
    msg: Any = None
    rgb: np.ndarray | None = None
    squashed: Any = None
    error: str | None = None  # a frame that does not decode: skipped
    fatal: str | None = None  # an encoding glassgem cannot read: the run stops


def check_paths(bag: Path, out: Path, resume: bool) -> None:
    b, o = bag.resolve(), out.resolve()
    if o == b or b in o.parents or o in b.parents:
        raise DataError(
            f"--out {out}: the input bag {bag} is inside it, or it is inside the input bag; choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: a file is there; the output bag is a folder, choose another --out")
    if out.exists() and not resume and any(out.iterdir()):
        raise DataError(f"--out {out}: already there (--resume continues an interrupted run; or choose another --out)")
    if out.exists() and not (out / METADATA).is_file() and {p.name for p in out.iterdir()} - {PART_DIR}:
        raise DataError(f"--out {out}: a folder that is not an output bag of glassgem predict; choose another --out")


def _start_state(out: Path, wanted: dict[str, str]) -> dict[str, str]:
    """The resume state to continue from (a fresh one without an earlier run)."""
    state = read_state(out)
    if state is None:
        return {**wanted, "consumed": "0", "images": "0", "selected": "0", "frames": "0", "done": "false"}
    for key in _KEPT:
        if state.get(key) != wanted[key]:
            raise DataError(
                f"--out {out} was written with {key} = {state.get(key)!r}, not {wanted[key]!r}: resume "
                "with the same bag and options, or choose another --out"
            )
    return state


def predict_bag(
    bag: str | Path,
    out: str | Path,
    scorer: Any,
    size: int | None = None,
    batch_size: int | None = None,
    overlay: bool = False,
    threshold: float | None = None,
    topic: str | None = None,
    every: int = 1,
    max_frames: int | None = None,
    copy_topics: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    checkpoint_s: float = 60.0,
) -> BagSummary:
    """Masks for the frames of `bag`'s image topic (`topic`, or its only one) into the bag folder `out`.

    `scorer`/`size`/`threshold`/`batch_size` as in glassgem.inference.predict.predict_files (a glassgem.Predictor,
    or what one is made of); `every`: every
    n-th frame; `max_frames`: stop after that many frames; `copy_topics`: topics to copy (["all"]: every one).
    Raises DataError (one line) for a bag that cannot be read, a topic choice that is not clear, an
    unsupported encoding, or an --out that is taken. `report` receives a line per skipped frame.
    """
    check_frame_options(every, max_frames)
    predictor = as_predictor(scorer, size, threshold, batch_size)
    bag, out = Path(bag), Path(out)
    check_paths(bag, out, resume)
    say = report or (lambda line: tqdm.write(line, file=sys.stderr))
    source = BagInput(bag, topic, copy_topics)
    try:
        return _run(
            source,
            out,
            FrameProcessor(predictor, overlay=overlay),
            predictor.batch_size,
            every,
            max_frames,
            resume,
            progress,
            say,
            checkpoint_s,
        )
    finally:
        source.close()


def _out_topics(source: BagInput, overlay: bool) -> list[tuple[str, str, str, str]]:
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    image = (IMAGE, *store.generate_msgdef(IMAGE, ros_version=2)[:1], store.hash_rihs01(IMAGE))
    ours = [MASK_TOPIC] + ([OVERLAY_TOPIC] if overlay else [])
    clash = [t for t in source.copied if t in ours]
    if clash:
        raise DataError(f"--copy-topics: {', '.join(clash)} would clash with glassgem's output topic of that name")
    return [(t, *image) for t in ours] + [(t, *source.definition(t)) for t in source.copied]


class _Serializer:
    """FrameOutput fields + the input header -> CDR bytes of a sensor_msgs/Image."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.store = get_typestore(Stores.ROS2_HUMBLE)
        types = self.store.types
        self.image, self.header, self.time = (
            types[IMAGE],
            types["std_msgs/msg/Header"],
            types["builtin_interfaces/msg/Time"],
        )

    def __call__(self, header: Any, fields: dict[str, Any]) -> bytes:
        stamp = self.time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
        msg = self.image(header=self.header(stamp=stamp, frame_id=str(header.frame_id)), **fields)
        return bytes(self.store.serialize_cdr(msg, IMAGE))


def _items(source: BagInput, state: dict[str, str], every: int, max_frames: int | None) -> Iterator[_Item]:
    images, selected = int(state["images"]), int(state["selected"])
    for position, topic, t, raw in source.messages(skip=int(state["consumed"])):
        item = _Item(position, topic, t, raw, copy=topic in source.copied)
        if topic == source.topic:
            if max_frames is not None and selected >= max_frames:
                return
            item.frame = images % every == 0
            images += 1
            selected += item.frame
        item.images, item.selected = images, selected
        if item.frame or item.copy:
            yield item


def _decode(source: BagInput, processor: FrameProcessor):
    def load(item: _Item) -> _Item:
        if item.frame:
            try:
                item.msg = source.deserialize(item.raw, item.topic)
                item.rgb, item.squashed = processor.prepare(item.msg, source.msgtype)
            except UnsupportedEncoding as e:
                item.fatal = str(e)
            except DataError as e:
                item.error = str(e)
        return item

    return load


def _run(
    source: BagInput,
    out: Path,
    processor: FrameProcessor,
    batch_size: int,
    every: int,
    max_frames: int | None,
    resume: bool,
    progress: bool,
    say: Callable[[str], None],
    checkpoint_s: float,
) -> BagSummary:
    wanted = {
        "input": str(source.path.resolve()),
        "topic": source.topic,
        "every": str(every),
        "max_frames": str(max_frames),
        "overlay": str(processor.overlay).lower(),
        "copy_topics": ",".join(source.copied),
    }
    out.mkdir(parents=True, exist_ok=True)
    state = _start_state(out, wanted)
    summary = BagSummary(bag=source.path, out=out, topic=source.topic, frames=int(state["frames"]))
    summary.resumed = summary.frames
    if state["done"] == "true":
        return summary
    writer = OutputBag(out, _out_topics(source, processor.overlay), state)
    writer.abort()  # a part a killed run left half-written
    serialize = _Serializer()
    expected = math.ceil(source.count / every)
    bar = tqdm(
        total=min(expected, max_frames) if max_frames else expected,
        initial=int(state["selected"]),
        desc=source.path.name,
        unit="frame",
        disable=not progress,
        dynamic_ncols=True,
    )
    start = last = time.perf_counter()
    counters = {k: int(state[k]) for k in ("consumed", "images", "selected", "frames")}

    def flush(batch: list[_Item]) -> None:
        good = [i for i in batch if i.frame and i.error is None]
        frames = []
        for i in good:
            assert i.rgb is not None, "a frame without an error has been decoded"
            frames.append(i.rgb)
        outputs = iter(processor.outputs(frames, [i.squashed for i in good]))
        for item in batch:
            if item.copy:
                writer.write(item.topic, item.time, item.raw)
            if item.frame and item.error is None:
                result = next(outputs)
                writer.write(MASK_TOPIC, item.time, serialize(item.msg.header, result.mask_fields))
                if result.overlay_fields is not None:
                    writer.write(OVERLAY_TOPIC, item.time, serialize(item.msg.header, result.overlay_fields))
                counters["frames"] += 1
            elif item.frame and item.error is not None:
                summary.skipped.append(item.error)
                say(f"skipped {source.path}: {source.topic}, message {item.position}: {item.error}")
            bar.update(item.frame)
            counters.update(consumed=item.position + 1, images=item.images, selected=item.selected)
        summary.frames = counters["frames"]

    ok = False
    try:
        batch: list[_Item] = []
        for item in prefetched(_items(source, state, every, max_frames), _decode(source, processor), 2 * batch_size):
            if item.fatal:
                raise DataError(f"{source.path}: {source.topic}, message {item.position}: {item.fatal}")
            batch.append(item)
            if sum(i.frame and i.error is None for i in batch) >= batch_size:
                flush(batch)
                batch = []
                if time.perf_counter() - last >= checkpoint_s:
                    writer.checkpoint(**counters)
                    last = time.perf_counter()
        flush(batch)
        ok = True
    finally:
        bar.close()
        if not ok:
            writer.abort()
    writer.checkpoint(**counters, done="true")
    summary.seconds = time.perf_counter() - start
    return summary


__all__ = ["BagSummary", "MASK_TOPIC", "OVERLAY_TOPIC", "check_paths", "predict_bag"]
