"""glassgem.runtime.keep_freed_memory: freed big blocks stay in the process (no page faults on reuse)."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = r"""
import sys, torch
if sys.argv[1] == "1":
    from glassgem.runtime import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
base = rss_mb()
x = torch.ones(64 * 2**20 // 4)  # 64 MB, written, then freed
del x
print(rss_mb() - base)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_blocks_stay_in_the_process_only_when_asked() -> None:
    def kept(flag: str) -> float:
        out = subprocess.run([sys.executable, "-c", _PROBE, flag], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    assert kept("0") < 16  # default glibc: the 64 MB mapping goes back to the kernel on free
    assert kept("1") > 48  # kept for the next allocation


def test_the_cli_applies_it(monkeypatch, tmp_path) -> None:
    import glassgem.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["data", "check", str(tmp_path / "missing")]) == 2  # a user error, reported
    assert calls == [1]
