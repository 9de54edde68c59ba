"""Helpers shared by the command modules."""
from __future__ import annotations

import argparse

def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x384, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size {text!r}: width and height must be >= 32")
    return w, h
