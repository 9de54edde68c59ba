"""glassgem.inference.threads.keep_freed_memory: freed big blocks stay in the process (no page faults on reuse)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

_PROBE = r"""
import sys, torch
if sys.argv[1] == "1":
    from glassgem.inference.threads import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
base = rss_mb()
x = torch.ones(64 * 2**20 // 4)  # 64 MB, written, then freed
del x
print(rss_mb() - base)
"""


@pytest.mark.slow
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


# ------------------------------------------------------------------------- CPU threading policy
def test_thread_policy_fills_only_what_the_user_left_unset():
    from glassgem.inference.threads import configure_cpu_threads, cpu_cores

    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    applied = configure_cpu_threads(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "OMP_WAIT_POLICY" not in applied  # the user's choice stays
    assert env["OMP_NUM_THREADS"] == str(cpu_cores()) == applied["OMP_NUM_THREADS"]
    assert "GOMP_SPINCOUNT" not in env  # a spin count would override the user's ACTIVE policy
    env = {}
    applied = configure_cpu_threads(env)
    assert applied["OMP_WAIT_POLICY"] == "PASSIVE" and applied["GOMP_SPINCOUNT"] == "1000"
    env = {"GOMP_SPINCOUNT": "0"}
    assert "GOMP_SPINCOUNT" not in configure_cpu_threads(env) and env["GOMP_SPINCOUNT"] == "0"


def test_thread_counts_follow_the_cpus_this_process_may_use():
    import os

    from glassgem.inference.threads import cpu_cores, decode_threads, loader_workers

    if hasattr(os, "sched_getaffinity"):
        assert cpu_cores() == len(os.sched_getaffinity(0))
    assert [decode_threads(c) for c in (1, 2, 3, 4, 8, 64)] == [1, 1, 1, 2, 4, 4]
    assert [loader_workers(2, c) for c in (1, 2, 3, 8)] == [0, 1, 2, 2]


def test_the_command_sets_the_policy_before_torch_is_imported():
    import subprocess
    import sys
    from pathlib import Path

    import glassgem

    code = (
        "import os, sys\nfrom glassgem.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n"
        "    pass\nprint(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    env["PYTHONPATH"] = str(Path(glassgem.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split()[-2:] == ["PASSIVE", "False"], out.stderr
