"""Helpers shared by the command modules."""
from __future__ import annotations

import argparse
import contextlib

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


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x384, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size {text!r}: width and height must be >= 32")
    return w, h


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


# Commands that only run models forward. Sigmoids and exponentials of large negative logits produce
# denormal floats, which x86 CPUs process ~100x slower; flushing them to zero made GEM-Lite inference
# ~20% faster (interleaved A/B, 2 threads) and changes no value above 1.2e-38.
INFERENCE_COMMANDS = frozenset({"predict", "evaluate", "bench", "demo", "visualize", "analyze"})


@contextlib.contextmanager
def flush_denormals(enabled: bool = True):
    """Flush denormal floats to zero on the CPU for the duration (then back to the default, off)."""
    if not enabled:
        yield
        return
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
