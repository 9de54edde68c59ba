"""`glassgem ros2 node`: glass masks for a live ROS 2 image topic.

The node subscribes to one sensor_msgs/Image or sensor_msgs/CompressedImage topic with the sensor-data
QoS profile (best effort, keep last 5: REP 2003), and publishes for each frame it scores a mono8 mask
(0/255, the frame's size) and, with publish_overlay, an rgb8 overlay, both with the input's header (stamp
and frame_id unchanged). Inference runs in its own thread behind a one-slot mailbox (frames.LatestFrame):
when the network is slower than the camera, waiting frames are replaced by newer ones, never queued. It
logs frames/s and the frames dropped every `rate_period` seconds.

NodeSettings (the ROS parameters) and everything per frame (frames.FrameProcessor, messages.py) are plain
Python, tested without ROS. Only run_node imports rclpy and the message packages of a ROS 2 install; that
thin shell is the one part the tests cannot run.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError, GlassgemError
from ..inference.quantize import PREDICT_PRECISIONS
from .messages import COMPRESSED, IMAGE, build_image, is_compressed_topic

ROS_HINT = (
    "glassgem ros2 node needs rclpy, ROS 2's Python client library, which this Python cannot import: "
    "install ROS 2 (Humble or newer, see docs.ros.org), `source /opt/ros/<distro>/setup.bash`, and run "
    "glassgem from a Python that sees it (a venv made with --system-site-packages); see docs/ros2.md"
)


@dataclass
class NodeSettings:
    """The node's ROS parameters (the command line's options give their defaults)."""

    input_topic: str = "/camera/image_raw"
    input_type: str = "auto"  # raw | compressed | auto (compressed when the topic ends in /compressed)
    mask_topic: str = "/glassgem/mask"
    overlay_topic: str = "/glassgem/overlay"
    publish_overlay: bool = False
    weights: str = ""  # "": the shipped default model
    threshold: float = 0.0  # 0: glass where its score beats the background's (the paper's protocol)
    size: int = 0  # 0: the model's own test size
    device: str = ""  # "": cuda if available
    precision: str = "auto"  # auto | fp32 | int8, as glassgem predict --precision
    rate_period: float = 5.0  # seconds between frames/s log lines

    def checked(self) -> NodeSettings:
        """Self, or a ConfigError naming the parameter that is wrong."""
        if self.input_type not in ("raw", "compressed", "auto"):
            raise ConfigError(f"input_type must be raw, compressed or auto, got {self.input_type!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"threshold must be 0 (off) or a glass probability in (0, 1), got {self.threshold}")
        if self.size < 0 or self.size % 32:
            raise ConfigError(f"size must be 0 (the model's) or a positive multiple of 32, got {self.size}")
        if self.precision not in PREDICT_PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PREDICT_PRECISIONS)}, got {self.precision!r}")
        if self.rate_period <= 0:
            raise ConfigError(f"rate_period must be positive, got {self.rate_period}")
        for name in ("input_topic", "mask_topic", "overlay_topic"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must name a topic")
        return self

    @property
    def input_msgtype(self) -> str:
        compressed = self.input_type == "compressed" or (
            self.input_type == "auto" and is_compressed_topic(self.input_topic)
        )
        return COMPRESSED if compressed else IMAGE

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> NodeSettings:
        """Settings from parameter values (as the node reads them), each converted to its field's type."""
        kinds = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        unknown = set(values) - set(kinds)
        if unknown:
            raise ConfigError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return cls(**{k: kinds[k](v) for k, v in values.items()}).checked()


def require_rclpy():
    """rclpy and the message classes, or a GlassgemError saying how to get ROS 2."""
    try:
        import rclpy
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
    except ImportError:
        raise GlassgemError(ROS_HINT) from None
    return rclpy, Node, qos_profile_sensor_data, Image, CompressedImage


def run_node(defaults: NodeSettings, ros_args: list[str] | None = None) -> int:
    """Start rclpy, run the node until Ctrl-C (or shutdown), return 0. The thin shell around FrameProcessor."""
    rclpy, Node, sensor_qos, Image, CompressedImage = require_rclpy()
    from ..inference.predictor import Predictor
    from .frames import FrameProcessor, LatestFrame, RateMeter

    rclpy.init(args=["glassgem", *(ros_args or [])])
    node = Node("glassgem")
    for name, value in asdict(defaults).items():
        node.declare_parameter(name, value)
    settings = NodeSettings.from_parameters({n: node.get_parameter(n).value for n in asdict(defaults)})
    predictor = Predictor(
        settings.weights or None,
        size=settings.size or None,
        threshold=settings.threshold or None,
        device=settings.device or None,
        precision=settings.precision,
    )
    processor = FrameProcessor(predictor, overlay=settings.publish_overlay)
    msgtype = settings.input_msgtype
    mailbox, stop = LatestFrame(), threading.Event()
    mask_pub = node.create_publisher(Image, settings.mask_topic, 10)
    overlay_pub = node.create_publisher(Image, settings.overlay_topic, 10) if settings.publish_overlay else None
    node.create_subscription(
        CompressedImage if msgtype == COMPRESSED else Image, settings.input_topic, mailbox.put, sensor_qos
    )
    log = node.get_logger()

    def work() -> None:
        meter = RateMeter(settings.rate_period)
        while not stop.is_set():
            msg = mailbox.take(timeout=0.5)
            if msg is None:
                continue
            try:
                out = processor.process(msg, msgtype)
            except GlassgemError as e:
                log.warning(f"{settings.input_topic}: frame skipped: {e}")
                continue
            mask_pub.publish(build_image(Image, msg.header, out.mask_fields, as_array=True))
            if overlay_pub is not None and out.overlay_fields is not None:
                overlay_pub.publish(build_image(Image, msg.header, out.overlay_fields, as_array=True))
            if (rate := meter.tick()) is not None:
                log.info(f"{rate:.2f} frames/s; {mailbox.dropped} of {mailbox.received} frames dropped so far")

    worker = threading.Thread(target=work, name="glassgem-inference", daemon=True)
    worker.start()
    log.info(
        f"glass masks of {settings.input_topic} ({msgtype}) -> {settings.mask_topic}"
        + (f", {settings.overlay_topic}" if overlay_pub else "")
    )
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        mailbox.close()
        worker.join(timeout=5)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


__all__ = ["NodeSettings", "ROS_HINT", "require_rclpy", "run_node"]
