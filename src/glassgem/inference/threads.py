"""Process-level CPU settings that make inference and training faster without changing any number.

`keep_freed_memory()`: glibc's malloc hands large blocks (a stride-2 feature map of 14 MB, say) back to
the kernel when they are freed and maps fresh ones on the next call, so every forward pass page-faults
its way through all its big activations again. Raising malloc's mmap and trim thresholds keeps freed
memory in the process for reuse: peak memory is the same, the page faults go. Measured on the 2-core
dev box: a GEM-Lite training step (batch 8, 384²) 5.45 -> 3.84 s in benchmarks/bench_train.py, a real
gdd-dev run 1.29 -> 1.47 images/s; single-image inference latency showed no difference beyond the
machine's noise. It is process-wide and cannot be undone cleanly, so the
`glassgem` command calls it (it owns the process); library users may call it themselves.
GLASSGEM_KEEP_FREED_MEMORY=0 in the environment turns it off.

`configure_cpu_threads()`: the OpenMP thread policy below, for the command; `library_thread_policy()` the same
for library users (glassgem.Predictor applies it once; GLASSGEM_THREAD_POLICY=0 opts out).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import MutableMapping

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: larger than any single activation of the presets at 1024²

_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (see module doc). True if the setting took effect;
    False (and nothing changed) on other C libraries or platforms. Calling it again is harmless."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("GLASSGEM_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and friends have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1
    _applied = ok
    return ok


def cpu_cores() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


# OpenMP settings that must be in the environment before the OpenMP runtime starts (the first `import torch`).
# Measured with benchmarks/bench_predict.py on the 2-core dev VM (docs/speed.md): libgomp's default
# spin-wait lets a worker thread burn its core waiting for a teammate that a neighbour process (or a decode
# thread) has descheduled, so every parallel op waits a whole time slice. Passive waiting alone holds
# under load but costs idle speed; a short spin first (GOMP_SPINCOUNT, which libgomp honours over the
# passive policy) buys it back. 2026-12-04, 40 gdd-dev photos, idle / beside a second predict (photos/s):
# default spinning 13.1 / 1.2; passive 12.1 / 8.3; spin 1000: 14.2 / 6.8; spin 3000: 14.6 / 3.6;
# spin 30000: 13.4 / 1.1 (docs/speed.md).
SPIN_COUNT = "1000"


def thread_settings(cores: int | None = None) -> dict[str, str]:
    cores = cores or cpu_cores()
    return {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": SPIN_COUNT}


_set_here: dict[str, str] = {}  # what configure_cpu_threads put into os.environ in this process
_set_late: set[str] = set()  # of those, the ones set after torch (and its OpenMP runtime) had started


def configure_cpu_threads(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put the threading policy (thread_settings) into `environ` (default os.environ) for every variable the
    user has not set. -> the variables set here. The `glassgem` command calls this first, before anything
    imports torch; its data-loading worker processes inherit the environment. In a process that has already
    imported torch (a library user, a test calling `glassgem.cli.main`) the OpenMP runtime read its settings
    at start: there only the thread count can still change (runtime.apply_thread_policy)."""
    own = environ is None
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    applied: dict[str, str] = {}
    user_policy = "OMP_WAIT_POLICY" in env  # then the spin count is theirs too (it would override it)
    for key, value in thread_settings().items():
        if key not in env and not (key == "GOMP_SPINCOUNT" and user_policy):
            env[key] = applied[key] = value
    if own:
        _set_here.update(applied)
        if "torch" in sys.modules:
            _set_late.update(applied)
    return applied


def library_thread_policy() -> dict[str, str]:
    """The command's policy for a library process (glassgem.Predictor, `from glassgem import ...`): as
    configure_cpu_threads, unless GLASSGEM_THREAD_POLICY=0 is in the environment. -> the variables glassgem has
    put into this process's environment after torch had started (now or before), which torch has not read;
    those the user set are never touched."""
    if os.environ.get("GLASSGEM_THREAD_POLICY", "1") == "0":
        return {}
    configure_cpu_threads()
    return {key: _set_here[key] for key in _set_late}


def decode_threads(cores: int | None = None) -> int:
    """Threads for decoding/encoding photos beside the network's intra-op threads: one per two cores (so on a
    2-core machine one decode thread shares the CPU with the two OpenMP threads instead of two), at most 4."""
    return max(1, min(4, (cores or cpu_cores()) // 2))


def loader_workers(requested: int, cores: int | None = None) -> int:
    """Data-loading worker processes for a DataLoader: `requested`, but never more than the cores left beside
    the main process (0 = load in the main process on a single core)."""
    return max(0, min(int(requested), (cores or cpu_cores()) - 1))


__all__ = [
    "keep_freed_memory",
    "cpu_cores",
    "configure_cpu_threads",
    "library_thread_policy",
    "thread_settings",
    "decode_threads",
    "loader_workers",
]
