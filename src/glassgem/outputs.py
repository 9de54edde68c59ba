"""Where a command may write: never onto or into one of its inputs, never outside its output folder.

Every writer of the CLI asks here before it writes anything (and before long work starts):
`check_not_input(output, inputs, option)` refuses an output file or folder that is an input or lies inside
an input folder (a ground-truth folder, the photos, a model folder); `check_inside(path, root, option)`
refuses a file below an output folder whose folders lead out of it (a symbolic link on the way);
`plain_name(name, what)` refuses a name that is meant as one folder below an output folder but is not
one plain path component ("..", "a/b", an absolute path). Paths are compared resolved (symbolic links
followed), so a second name for the same folder does not slip through.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import DataError


def resolved(path: str | os.PathLike, label: str) -> Path:
    """`path` with every symbolic link followed; DataError naming `label` for a loop."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise DataError(f"{label}: cannot follow this path ({e})") from None


def is_within(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def check_not_input(
    output: str | os.PathLike | None,
    inputs: Iterable[str | os.PathLike | None],
    option: str,
    roots: Iterable[str | os.PathLike | None] = (),
) -> Path | None:
    """Refuse (DataError naming `option`) an `output` that is one of `inputs` (files, or folders that hold input
    files; None ones are skipped) or lies inside one of them, or that is one of `roots` (folders whose input
    files lie in subfolders, e.g. a data set's images/ and masks/: a report beside those is fine).
    -> the resolved output, or None when there is no output."""
    if output is None:
        return None
    out = resolved(output, f"{option} {output}")
    checked = [(item, True) for item in inputs] + [(item, False) for item in roots]
    for item, holds_files in checked:
        if item is None or not os.path.lexists(item):
            continue
        src = resolved(item, str(item))
        if out == src:
            raise DataError(
                f"{option} {output}: this is the input {item}; writing there would overwrite it; "
                f"choose another {option}"
            )
        if holds_files and src.is_dir() and is_within(out, src):
            raise DataError(
                f"{option} {output}: inside the input folder {item}; writing there would overwrite or "
                f"mix with its files; choose another {option} outside it"
            )
    return out


def check_file_output(path: str | os.PathLike | None, option: str) -> None:
    """Refuse, before any work, an output meant as a file that is an existing folder (the write would fail
    only at the end, naming a temporary file)."""
    if path is not None and Path(path).is_dir():
        raise DataError(f"{option} {path}: this is a folder; give the name of a file to write (inside it, say)")


def check_inside(path: str | os.PathLike, root: str | os.PathLike, option: str) -> Path:
    """Refuse (DataError naming `option` and `root`) a file `path` to be written below the output folder
    `root` whose folders, symbolic links followed, lead outside it. The file itself may be a link: writes
    replace a link, never write through it. -> where the file will be written."""
    base = resolved(root, f"{option} {root}")
    path = Path(path)
    target = resolved(path.parent, str(path.parent)) / path.name
    if not is_within(target.parent, base) or path.name in ("", ".", ".."):
        raise DataError(
            f"{option} {root}: {path} would be written to {target}, outside {root} (a symbolic link "
            "or '..' on the way); remove the link or choose another output folder"
        )
    return target


def plain_name(name: object, what: str) -> str:
    """`name` if it is one plain path component (a folder or file name, no separators, not '.' or '..'),
    else DataError naming `what` (e.g. "plan.toml: run 2's name")."""
    text = name if isinstance(name, str) else ""
    if (
        not text.strip()
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or "\0" in text
        or os.path.isabs(text)
        or Path(text).drive
    ):
        raise DataError(
            f"{what} {name!r}: expected a plain name (letters, digits, '-', '_', '.'; no '/', "
            "'..' or absolute path), as it names a folder below the output folder"
        )
    return text


__all__ = ["check_file_output", "check_inside", "check_not_input", "is_within", "plain_name", "resolved"]
