"""Every command the README shows runs as shown.

The README's ```bash blocks are read line by line (a trailing backslash continues a line; lines that are only
a comment are skipped). The convention, also stated in the README's "Development" section:

- A command whose trailing comment starts with `needs:` (`# needs: GSD-S`, `# needs: a GPU`,
  `# needs: package registries`) needs something a test cannot have. It is only checked: a `glassgem`
  command is parsed by the real `glassgem` argument parser (subcommand, options, option values), a
  `pip install -e ".[extras]"` must name extras that pyproject.toml defines.
- Every other `glassgem` command (also spelled `.venv/bin/glassgem`) is really run, in the order shown, in
  one temporary folder, as `python -m glassgem.cli ...` with this interpreter, and must exit with 0. The
  files it reads are fixtures made here (FIXTURES: `my.jpg` is scikit-image's coffee photo).
- `make TARGET` is not run (it installs a virtual environment); the Makefile must have the target, and
  `make -n demo` must not install the dev extras (the demo needs none of them).
- `python3.11 -m venv .venv` (with `--without-pip`: ensurepip is slow) and `. .venv/bin/activate` are run in
  the temporary folder when python3.11 is on PATH (the Makefile's venv; activating it must put its python
  first on PATH).
- Any other kind of command fails this test: teach it here, or mark the command `needs:`.

The ```python blocks are run too (in the same folder, after the shell commands).
The docs/ pages get a lighter check: each `glassgem` command in their ```bash blocks must parse.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import glassgem

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NEEDS = re.compile(r"#\s*needs:", re.IGNORECASE)
GLASSGEM = ("glassgem", ".venv/bin/glassgem")


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(block: str) -> list[str]:
    """Logical lines of a shell block: continuations joined, comment-only and empty lines dropped."""
    out, cur = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def readme_commands() -> list[tuple[str, list[str], bool]]:
    """(line, argv without the comment, needs-marker) for every command in the README's bash blocks."""
    cmds = []
    for block in _blocks(README.read_text(), "bash"):
        for line in _commands(block):
            cmds.append((line, shlex.split(line, comments=True), bool(NEEDS.search(line))))
    return cmds


def _parse(argv: list[str]) -> None:
    """Parse a glassgem command line with the real parser, running nothing."""
    from glassgem import cli

    parser = cli.build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as e:  # --help / --version exit 0 after printing; argparse errors exit 2
        assert e.code == 0, f"glassgem {shlex.join(argv)}: argparse exit {e.code}"
    except Exception as e:  # the CLI's parser raises its own usage error instead of exiting
        raise AssertionError(f"glassgem {shlex.join(argv)}: {e}") from e


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def _extras() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(glassgem.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _fixtures(where: Path) -> None:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.coffee()).save(where / "my.jpg", quality=92)  # 400x600, ships in scikit-image's wheel


def test_readme_shows_commands_of_every_kind_the_test_knows():
    cmds = readme_commands()
    assert any(argv[0] in GLASSGEM and not needs for _, argv, needs in cmds), "no runnable glassgem command"
    assert {"demo", "test"} <= {argv[1] for _, argv, _ in cmds if argv[0] == "make"}


@pytest.mark.slow
def test_every_readme_command_runs_or_parses(tmp_path):
    _fixtures(tmp_path)
    ran = []
    for line, argv, needs in readme_commands():
        prog = argv[0]
        if prog in GLASSGEM:
            _parse(argv[1:])
            if needs:
                continue
            r = subprocess.run(
                [sys.executable, "-m", "glassgem.cli", *argv[1:]],
                cwd=tmp_path,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert r.returncode == 0, f"{line}\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
            ran.append(line)
        elif prog == "make":
            assert len(argv) == 2 and argv[1] in _makefile_targets(), f"{line}: no such Makefile target"
        elif prog == "pip":
            m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", argv[-1])
            assert argv[1:3] == ["install", "-e"] and m, f'{line}: expected pip install -e ".[extras]"'
            unknown = set((m.group(1) or "").split(",")) - _extras() - {""}
            assert not unknown, f"{line}: extras not in pyproject.toml: {unknown}"
            assert needs, f"{line}: pip downloads; mark it '# needs: package registries'"
        elif prog == "python3.11" or prog in (".", "source"):
            pass  # run below, together, in a shell
        else:
            raise AssertionError(f"{line}: tests/test_readme.py does not know this kind of command")
    assert ran, "the README's runnable glassgem commands were not run"
    # what the quickstart promises: a 0/255 mask at the photo's own size, and the overlay
    from PIL import Image

    mask = Image.open(tmp_path / "masks" / "my.png")
    assert mask.size == Image.open(tmp_path / "my.jpg").size
    assert (tmp_path / "masks" / "my_overlay.jpg").is_file()


def test_readme_venv_commands_run_and_match_the_makefile(tmp_path):
    cmds = [
        (line, argv)
        for line, argv, needs in readme_commands()
        if not needs and (argv[0] == "python3.11" or argv[0] in (".", "source"))
    ]
    assert cmds, "the README shows how to create and activate the venv"
    venv = re.search(r"^VENV\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), flags=re.M).group(1)
    for line, argv in cmds:
        if argv[0] == "python3.11":
            assert argv[1:3] == ["-m", "venv"] and argv[3] == venv, f"{line}: the Makefile's venv is {venv}"
            assert re.search(r'requires-python\s*=\s*">=3\.11', (ROOT / "pyproject.toml").read_text())
        else:
            assert argv[1] == f"{venv}/bin/activate", f"{line}: the Makefile's venv is {venv}"
    if not shutil.which("python3.11"):
        pytest.skip("python3.11 is not on PATH: the venv commands were checked, not run")
    # run as shown, except that the venv skips ensurepip (pip's own install: the slow part, Python's, not ours)
    lines = [shlex.join([*argv, "--without-pip"]) if argv[0] == "python3.11" else line for line, argv in cmds]
    script = "set -e\n" + "\n".join(lines) + f'\ntest "$(command -v python)" = "$PWD/{venv}/bin/python"\n'
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_make_demo_installs_no_extras():
    make = shutil.which("make")
    if not make:
        pytest.skip("make is not installed")
    r = subprocess.run(
        [make, "-n", "demo", "VENV=/nonexistent/venv-for-dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    installs = [line for line in r.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("[" not in line for line in installs), r.stdout  # `pip install -e .`, no extras
    assert "glassgem demo" in r.stdout


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path):
    _fixtures(tmp_path)
    for code in _blocks(README.read_text(), "python"):
        r = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, f"{code}\n{r.stderr[-2000:]}"


def test_glassgem_commands_in_docs_parse():
    """docs/*.md: every `glassgem` command of a bash block parses (those with shell variables or an
    ellipsis stand for a family of commands and are left out)."""
    checked = 0
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for block in _blocks(page.read_text(), "bash"):
            for line in _commands(block):
                if "$" in line or "…" in line:
                    continue
                argv = shlex.split(line, comments=True)
                if argv[:4] == ["accelerate", "launch", "-m", "glassgem.cli"]:
                    argv = ["glassgem", *argv[4:]]
                if argv and argv[0] in GLASSGEM:
                    _parse(argv[1:])
                    checked += 1
    assert checked > 20


def test_readme_architecture_names_every_module_and_package():
    """The README's Architecture tree must match the code: every module file and every folder of
    src/glassgem (and every shipped weights folder) is named in it."""
    text = README.read_text()
    tree = text[text.index("## Architecture") :]
    tree = tree[: tree.index("\n## ", 3)]
    package = Path(glassgem.__file__).resolve().parent
    missing = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts or path.name in ("__init__.py", "__main__.py"):
            continue
        if path.name not in tree:
            missing.append(str(path.relative_to(package)))
    for folder in sorted(p for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")):
        if f"{folder.name}/" not in tree and folder.name != "assets":
            missing.append(f"{folder.name}/")
    for weights in sorted((package / "weights").iterdir()):
        if weights.is_dir() and f"weights/{weights.name}/" not in tree:
            missing.append(f"weights/{weights.name}/")
    assert not missing, f"README Architecture does not name: {missing}"
