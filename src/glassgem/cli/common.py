"""Helpers shared by the command modules."""
from __future__ import annotations

import argparse

def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_group(sub: argparse._SubParsersAction, name: str, help: str, adders, metavar: str | None = None) -> None:
    """A command group (`glassgem NAME <what>`): each `add(group_sub)` in `adders` declares one nested
    subcommand. `glassgem NAME` alone prints the group's help (a subcommand's own default replaces it)."""
    p = sub.add_parser(name, help=help)
    group_sub = p.add_subparsers(dest=f"{name}_command", metavar=metavar or f"{name.upper()}_COMMAND")
    p.set_defaults(func=lambda args: _print_help(p))
    for add in adders:
        add(group_sub)


# Every --size of the command line that gives two sides is HEIGHTxWIDTH (as image arrays and tensors are
# shaped): `synth procedural --size 384x512` and `export onnx --size 320x448` are both 384/320 rows high.
def _parse_hw(text: str) -> tuple[int, int]:
    """--size HxW (height x width) -> (h, w), both at least 32."""
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 384x512 (height x width), got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size {text!r}: height and width must be >= 32")
    return h, w


MAX_TEST_SIZE = 4096  # a 4096² input already needs tens of GB for GEM-Tiny's attention; beyond: the OOM killer


def _test_size(text: str) -> int:
    """--size of predict, evaluate, bench, visualize: a square network input side, a multiple of 32."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be a whole number (a multiple of 32), got {text!r}") from None
    if value < 32 or value % 32 or value > MAX_TEST_SIZE:
        raise argparse.ArgumentTypeError(f"--size {value}: expected a multiple of 32 from 32 to {MAX_TEST_SIZE} "
                                         "(384 is the paper's)")
    return value


# Commands that only run models forward: they run with denormal floats flushed to zero
# (glassgem.inference.runtime.flush_denormals says why).
INFERENCE_COMMANDS = frozenset({"predict", "evaluate", "bench", "demo", "visualize", "analyze"})
