"""Hugging Face Hub ids -> local weight files (download, or the local cache offline), and uploads.

A Hub reference is `owner/name` (when no such local path exists), `owner/name@revision`, or
`hf://owner/name[@revision][/path/in/repo]`. `download(repo_id, filename, revision)` returns a local path:
a snapshot folder for a glassgem layout (config.json + model.safetensors), else the weights file, which
`read_pretrained` converts on load when it is an original GEM (detectron2 / MaskDINO) checkpoint.

Which file: `filename` if given; otherwise the glassgem layout if the repo has one, else its only
checkpoint, else the one the table `PREFERRED` names for a known repo, else an error listing them.
Offline (HF_HUB_OFFLINE=1, read when called) only the local cache is used: HF_HUB_CACHE, or HF_HOME/hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import CheckpointError
from .refs import HUB_PREFIX, parse_hub_ref

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"  # the glassgem layout (as hub.pretrained)
# Files of a model repo that are certainly not weights (the rest are candidates: release files need not
# carry a weights suffix, e.g. one seen as `GEM-Base-S-GSD-20x-IoU.774`).
_NOT_WEIGHTS = (
    ".md",
    ".txt",
    ".json",
    ".yaml",
    ".yml",
    ".py",
    ".sh",
    ".toml",
    ".cfg",
    ".ipynb",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".pdf",
    ".zip",
    ".tar",
    ".gz",
    ".onnx",
    ".csv",
)

# Repos holding several checkpoints: which one to take when no `filename` is given (every word must be in
# the file name, case-insensitive, and exactly one file must match). ASSUMPTION, not confirmed: the
# original authors' release (github.com/isbrycee/GEM, "all pre-trained models" on the Hub) holds one
# detectron2 checkpoint per row of their results table (GEM-Tiny / GEM-Base x S-GSD-1x/5x/10x/20x); the
# default is GEM-Tiny pre-trained on S-GSD-20x (their best Tiny, IoU 0.770; glassgem's gem-tiny preset).
PREFERRED: dict[str, tuple[str, ...]] = {"Bryceee/GEM-Glass-Segment-model": ("tiny", "20x")}


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, not only when huggingface_hub was imported."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any(f and f.strip().lower() in {"1", "on", "yes", "true"} for f in flags) or bool(
        getattr(hf_constants, "HF_HUB_OFFLINE", False)
    )


def cache_dir() -> str:
    """The Hub cache as the environment says now (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return hf_constants.HF_HUB_CACHE


def _is_candidate(path: str) -> bool:
    name = PurePosixPath(path).name
    return not name.startswith(".") and not name.lower().endswith(_NOT_WEIGHTS)


def choose_file(repo_id: str, files: list[str]) -> str:
    """The weights file to take from a repo holding `files` (paths inside the repo), see the module doc."""
    if WEIGHTS_FILE in files and CONFIG_FILE in files:
        return WEIGHTS_FILE
    candidates = sorted(f for f in files if _is_candidate(f))
    if len(candidates) == 1:
        return candidates[0]
    words = PREFERRED.get(repo_id, ())
    preferred = [f for f in candidates if words and all(w in f.lower() for w in words)]
    if len(preferred) == 1:
        return preferred[0]
    if not candidates:
        raise CheckpointError(
            f"{repo_id}: no weights file in this Hugging Face Hub repo (files: {', '.join(sorted(files)) or 'none'})"
        )
    raise CheckpointError(
        f"{repo_id}: {len(candidates)} checkpoints in this Hugging Face Hub repo "
        f"({', '.join(candidates)}); pick one: GEM.from_pretrained({repo_id!r}, filename=...) "
        f"or --weights hf://{repo_id}/<file>"
    )


def _where(repo_id: str, revision: str | None) -> str:
    return repo_id + (f"@{revision}" if revision else "")


def _not_cached(
    repo_id: str, revision: str | None, cache: str, offline: bool, what: str = "", unreachable: str = ""
) -> CheckpointError:
    why = (
        "the machine is offline (HF_HUB_OFFLINE)"
        if offline
        else f"the Hub could not be reached{f' ({unreachable})' if unreachable else ''}"
    )
    return CheckpointError(
        f"{_where(repo_id, revision)}: {what or 'not a local path, and this Hugging Face Hub repo'}"
        f" is not in the local cache ({cache}) and {why}; download it once online or pass a "
        f"local path"
    )


def unreachable_reason() -> str:
    """'' when the Hub's host name resolves, else why not (e.g. "gaierror: name resolution failed"). Checked
    first so that a machine without network goes straight to the cache instead of through
    huggingface_hub's retries (about 25 s and ten warning lines before the same answer)."""
    host = urlparse(hf_constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"{type(e).__name__}: cannot resolve {host}"
    return ""


@contextlib.contextmanager
def _hub_quiet() -> Iterator[None]:
    """huggingface_hub's own warnings (retries, ...) off: the CheckpointError raised here says what happened."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def _repo_files(
    repo_id: str, revision: str | None, cache: str, offline: bool, unreachable: str
) -> tuple[list[str], bool]:
    """(paths of the repo's files, whether only the cache can be used). Online: the Hub's listing;
    offline or unreachable: the files of the cached snapshot."""
    if not offline and not unreachable:
        try:
            return HfApi().list_repo_files(repo_id, revision=revision), False
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise CheckpointError(
                f"{_where(repo_id, revision)}: not a local path, and not a Hugging Face Hub "
                f"repo (or revision) that can be read ({type(e).__name__})"
            ) from None
        except Exception as e:  # no network, a proxy, the Hub down (httpx errors are not OSErrors): the cache
            unreachable = type(e).__name__
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except LocalEntryNotFoundError:
        raise _not_cached(repo_id, revision, cache, offline, unreachable=unreachable) from None
    files = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    return files, True


def _fetch(
    repo_id: str, filename: str, revision: str | None, cache: str, local_only: bool, offline: bool, unreachable: str
) -> Path:
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache,
                local_files_only=local_only,
                library_name="glassgem",
            )
        )
    except LocalEntryNotFoundError:
        raise _not_cached(repo_id, revision, cache, offline, filename, unreachable) from None
    except EntryNotFoundError:
        raise CheckpointError(
            f"{_where(repo_id, revision)}: no file {filename!r} in this Hugging Face Hub repo"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise CheckpointError(
            f"{_where(repo_id, revision)}: not a Hugging Face Hub repo (or revision) that can "
            f"be read ({type(e).__name__})"
        ) from None
    except HfHubHTTPError as e:
        raise CheckpointError(
            f"{_where(repo_id, revision)}: the Hugging Face Hub refused {filename!r} ({' '.join(str(e).split())[:200]})"
        ) from None


def download(repo_id: str, filename: str | None = None, revision: str | None = None) -> Path:
    """A Hub repo -> a local path: the snapshot folder for a glassgem layout (config.json beside
    model.safetensors), else the chosen weights file. Offline, or when the Hub's host does not resolve,
    only the local cache is read."""
    cache, offline = cache_dir(), is_offline()
    unreachable = "" if offline else unreachable_reason()
    local_only = offline or bool(unreachable)
    with _hub_quiet():
        if filename is None:
            files, local_only = _repo_files(repo_id, revision, cache, offline, unreachable)
            filename = choose_file(repo_id, files)
        path = _fetch(repo_id, filename, revision, cache, local_only, offline, unreachable)
        if PurePosixPath(filename).name == WEIGHTS_FILE:  # a glassgem layout: its config.json comes along
            sibling = str(PurePosixPath(filename).with_name(CONFIG_FILE))
            try:
                return _fetch(repo_id, sibling, revision, cache, local_only, offline, unreachable).parent
            except CheckpointError:
                return path  # no config beside it: read_pretrained says what to pass
    return path


def push_folder(
    folder: str | Path,
    repo_id: str,
    commit_message: str = "Upload GEM model",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Create `repo_id` if needed and upload every file of `folder` in one commit. -> the CommitInfo."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, revision=revision, create_pr=create_pr
    )


__all__ = [
    "HUB_PREFIX",
    "PREFERRED",
    "cache_dir",
    "choose_file",
    "download",
    "is_offline",
    "parse_hub_ref",
    "push_folder",
]
