"""`glassgem ros2 node`: the live ROS 2 node (glassgem.ros2.node; needs a ROS 2 install for rclpy)."""

from __future__ import annotations

import argparse

from ..inference.quantize import PREDICT_PRECISIONS
from .common import _add_group, _test_size


def _add_node(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "node",
        help="glass masks for a live image topic (needs ROS 2: rclpy)",
        description="Subscribe to a sensor_msgs/Image or CompressedImage topic (sensor-data QoS) and publish a "
        "mono8 glass mask (0/255) per scored frame with the frame's header, optionally an rgb8 overlay. Frames "
        "that arrive while the network is busy are dropped, not queued. The options set the defaults of the "
        "node's ROS parameters (same names, with _ for -); --ros-args -p NAME:=VALUE overrides them. "
        "See docs/ros2.md.",
    )
    p.add_argument("--input-topic", default="/camera/image_raw", help="image topic (default /camera/image_raw)")
    p.add_argument(
        "--input-type",
        default="auto",
        choices=("auto", "raw", "compressed"),
        help="sensor_msgs/Image (raw) or CompressedImage (default auto: compressed when the topic ends in /compressed)",
    )
    p.add_argument("--mask-topic", default="/glassgem/mask", help="mask topic (default /glassgem/mask)")
    p.add_argument("--overlay-topic", default="/glassgem/overlay", help="overlay topic (default /glassgem/overlay)")
    p.add_argument("--overlay", action="store_true", help="also publish the overlay (rgb8, glass tinted red)")
    p.add_argument("--weights", default="", help="model (as `glassgem predict --weights`; default: the shipped one)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="glass where its probability exceeds this (default 0: the larger score wins)",
    )
    p.add_argument(
        "--size", type=_test_size, default=0, help="square test size, a multiple of 32 (default: the model's)"
    )
    p.add_argument("--device", default="", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PREDICT_PRECISIONS,
        help="as glassgem predict --precision (default auto: int8 for the shipped GEM-S on a CPU, else fp32)",
    )
    p.add_argument("--rate-period", type=float, default=5.0, help="seconds between frames/s log lines (default 5)")
    p.add_argument(
        "--ros-args",
        nargs=argparse.REMAINDER,
        default=None,
        help="everything after it goes to ROS (-p name:=value, -r remappings, --log-level ...)",
    )
    p.set_defaults(func=_run_node)


def _run_node(args: argparse.Namespace) -> int:
    from ..ros2.node import NodeSettings, require_rclpy, run_node

    settings = NodeSettings(
        input_topic=args.input_topic,
        input_type=args.input_type,
        mask_topic=args.mask_topic,
        overlay_topic=args.overlay_topic,
        publish_overlay=args.overlay,
        weights=args.weights,
        threshold=args.threshold,
        size=args.size,
        device=args.device,
        precision=args.precision,
        rate_period=args.rate_period,
    ).checked()
    require_rclpy()  # before anything loads: one line saying how to get ROS 2
    return run_node(settings, ["--ros-args", *args.ros_args] if args.ros_args is not None else None)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `ros2 node` to the `glassgem` subcommands."""
    _add_group(sub, "ros2", "ROS 2: the live node (bags: glassgem predict BAG)", [_add_node])
