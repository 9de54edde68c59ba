"""Hugging Face Hub ids (hub/remote.py through GEM.from_pretrained / resolve_pretrained, and the CLI's
--weights) and push_to_hub. Never any network: every test runs offline against a local cache laid out
as the Hub's (HF_HUB_CACHE/models--owner--name/{refs/main, snapshots/<commit>/<file>}), and uploads go
to a fake HfApi."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hf_constants
from PIL import Image

from conftest import REFERENCE, needs
from glassgem import GEM
from glassgem.cli import main
from glassgem.config import model_preset
from glassgem.errors import CheckpointError
from glassgem.hub import remote
from glassgem.hub.original import glassgem_to_original, original_to_glassgem
from glassgem.hub.pretrained import resolve_pretrained

ORIGINAL_REPO = "Bryceee/GEM-Glass-Segment-model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _NoNetwork:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a test reached for the network (HfApi)")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache; offline (HF_HUB_OFFLINE=1, also in huggingface_hub's constants); no HfApi."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(remote, "HfApi", _NoNetwork)
    return cache


def put_in_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT) -> Path:
    """Lay files out as huggingface_hub's cache does: snapshots/<commit>/<file> (links, as the Hub's
    links into blobs/) and refs/main holding <commit>. -> the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, src in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(Path(src).resolve())
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _debug(seed: int = 0) -> GEM:
    torch.manual_seed(seed)
    model = GEM(model_preset("debug"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


def _same_weights(a: GEM, b: GEM) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _original_file(model: GEM, path: Path) -> Path:
    """`model` saved as the original code saves checkpoints: {"model": original-named state dict}."""
    sd = glassgem_to_original(model.state_dict(), model.cfg.encoder, model.cfg.dec_layers)
    torch.save({"model": sd, "iteration": 0}, path)
    return path


def test_glassgem_layout_loads_by_hub_id(tmp_path, hub_cache):
    model = _debug()
    folder = model.save_pretrained(tmp_path / "saved")
    snapshot = put_in_cache(
        hub_cache,
        "someone/gem-debug",
        {
            "config.json": folder / "config.json",
            "model.safetensors": folder / "model.safetensors",
            "README.md": folder / "config.json",
        },
    )
    assert resolve_pretrained("someone/gem-debug") == snapshot
    for ref in (
        "someone/gem-debug",
        f"someone/gem-debug@{COMMIT}",
        "hf://someone/gem-debug",
        "hf://someone/gem-debug/model.safetensors",
    ):
        loaded = GEM.from_pretrained(ref)
        assert loaded.cfg == model.cfg and _same_weights(loaded, model), ref
    assert _same_weights(GEM.from_pretrained("someone/gem-debug", revision=COMMIT), model)


def test_original_release_is_converted_on_load_and_filename_picks_the_checkpoint(tmp_path, hub_cache):
    """The original authors' repo holds several detectron2 checkpoints: without filename= the documented
    default (GEM-Tiny, S-GSD-20x) is taken; filename= or hf://repo/<file> picks another."""
    tiny20, tiny1 = _debug(seed=1), _debug(seed=2)
    put_in_cache(
        hub_cache,
        ORIGINAL_REPO,
        {
            "GEM-Tiny-S-GSD-20x.pth": _original_file(tiny20, tmp_path / "a.pth"),
            "GEM-Tiny-S-GSD-1x.pth": _original_file(tiny1, tmp_path / "b.pth"),
            "README.md": tmp_path / "a.pth",
            ".gitattributes": tmp_path / "a.pth",
        },
    )
    cfg = model_preset("debug")  # debug weights carry no encoder the key map can recognise: config given
    assert _same_weights(GEM.from_pretrained(ORIGINAL_REPO, config=cfg), tiny20)
    assert _same_weights(GEM.from_pretrained(ORIGINAL_REPO, config=cfg, filename="GEM-Tiny-S-GSD-1x.pth"), tiny1)
    assert _same_weights(GEM.from_pretrained(f"hf://{ORIGINAL_REPO}/GEM-Tiny-S-GSD-1x.pth", config=cfg), tiny1)


def test_several_checkpoints_without_a_default_name_them(tmp_path, hub_cache):
    path = _original_file(_debug(), tmp_path / "w.pth")
    put_in_cache(hub_cache, "lab/gem-runs", {"run1.pth": path, "run2.pth": path, "notes.md": path})
    with pytest.raises(CheckpointError, match=r"lab/gem-runs: 2 checkpoints.*run1.pth, run2.pth.*filename="):
        GEM.from_pretrained("lab/gem-runs", config=model_preset("debug"))


@pytest.mark.slow
@needs(REFERENCE / "gem-tiny" / "model_official_format.pth", "original GEM reference checkpoint")
def test_original_gem_tiny_checkpoint_by_hub_id_infers_its_config(hub_cache):
    """The shared original-layout GEM-Tiny checkpoint as the only file of a Hub repo: config read off the
    keys, the same weights as loading the file directly."""
    src = REFERENCE / "gem-tiny" / "model_official_format.pth"
    put_in_cache(hub_cache, ORIGINAL_REPO, {"model_final.pth": src})
    from_hub = GEM.from_pretrained(ORIGINAL_REPO)
    assert from_hub.cfg.encoder == "tinyvit" and from_hub.cfg.name == "gem-tiny"
    expected, _ = original_to_glassgem(torch.load(src, map_location="cpu", weights_only=True)["model"])
    own = from_hub.state_dict()
    assert set(expected) <= set(own) and all(torch.equal(own[k], v) for k, v in expected.items())


def test_offline_and_not_cached_is_one_clear_line(hub_cache):
    with pytest.raises(CheckpointError) as err:
        GEM.from_pretrained("nobody/absent-model")
    message = str(err.value)
    assert "nobody/absent-model" in message and "offline" in message and "\n" not in message
    # a file that is not in the cached snapshot: named too
    put_in_cache(hub_cache, "nobody/partial", {"config.json": Path(__file__)})
    with pytest.raises(CheckpointError, match=r"nobody/partial.*model.safetensors.*offline"):
        GEM.from_pretrained("hf://nobody/partial/model.safetensors")


def test_online_but_unreachable_falls_back_to_the_cache(tmp_path, hub_cache, monkeypatch):
    """Not offline, but listing the repo fails (no network): what the cache holds is used, else one line."""

    class Unreachable:
        def __init__(self, *args, **kwargs):
            pass

        def list_repo_files(self, repo_id, revision=None):
            raise ConnectionError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # tests/synth_fixtures.py sets it on import
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(remote, "HfApi", Unreachable)
    monkeypatch.setattr(remote, "unreachable_reason", lambda: "")  # the host resolves; the listing fails
    model = _debug()
    folder = model.save_pretrained(tmp_path / "saved")
    put_in_cache(
        hub_cache,
        "someone/gem-debug",
        {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"},
    )
    assert _same_weights(GEM.from_pretrained("someone/gem-debug"), model)
    with pytest.raises(CheckpointError, match=r"nobody/absent.*could not be reached \(ConnectionError\)"):
        GEM.from_pretrained("nobody/absent")


def test_a_host_that_does_not_resolve_goes_straight_to_the_cache(tmp_path, hub_cache, monkeypatch, capsys):
    """No DNS (a robot without network): the Hub is never called (no retries, no warnings), the cache
    answers, and a repo it lacks is one line saying why."""
    import socket

    class MustNotBeCalled:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the Hub API was called though its host does not resolve")

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(remote, "HfApi", MustNotBeCalled)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert remote.unreachable_reason().startswith("gaierror: cannot resolve huggingface.co")
    model = _debug()
    folder = model.save_pretrained(tmp_path / "saved")
    put_in_cache(
        hub_cache,
        "someone/gem-debug",
        {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"},
    )
    assert _same_weights(GEM.from_pretrained("someone/gem-debug"), model)
    assert _same_weights(GEM.from_pretrained("hf://someone/gem-debug/model.safetensors"), model)
    capsys.readouterr()
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    assert main(["predict", str(photo), "--out", str(tmp_path / "out"), "--weights", "nobody/absent-model"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "nobody/absent-model" in err and "cannot resolve huggingface.co" in err


def test_cli_weights_take_hub_ids(tmp_path, hub_cache, capsys):
    folder = _debug().save_pretrained(tmp_path / "saved")
    put_in_cache(
        hub_cache,
        "someone/gem-debug",
        {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"},
    )
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    assert (
        main(
            ["predict", str(photo), "--out", str(tmp_path / "out"), "--weights", "someone/gem-debug", "--device", "cpu"]
        )
        == 0
    )
    assert (tmp_path / "out" / "photo.png").is_file()
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(photo),
                "--out",
                str(tmp_path / "out2"),
                "--weights",
                "nobody/absent-model",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nobody/absent-model" in err and "offline" in err


def test_hub_references_and_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert remote.parse_hub_ref("owner/name") == ("owner/name", None, None)
    assert remote.parse_hub_ref("owner/name@v1.0") == ("owner/name", None, "v1.0")
    assert remote.parse_hub_ref("hf://owner/name@main/sub/w.pth") == ("owner/name", "sub/w.pth", "main")
    assert remote.parse_hub_ref("runs/model.pth") is None  # a weights file name stays a path
    assert remote.parse_hub_ref("gem-lite") is None and remote.parse_hub_ref("/abs/path") is None
    assert remote.parse_hub_ref(Path("owner/name")) is None
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert remote.parse_hub_ref("owner/name") is None  # an existing local folder wins
    with pytest.raises(CheckpointError, match="hf://"):
        remote.parse_hub_ref("hf://just-a-name")


def test_choose_file():
    assert remote.choose_file("a/b", ["config.json", "model.safetensors", "old.pth"]) == "model.safetensors"
    assert remote.choose_file("a/b", ["README.md", "weights/final.pth", ".gitattributes"]) == "weights/final.pth"
    release = ["GEM-Base-S-GSD-20x-IoU.774", "GEM-Tiny-S-GSD-1x-IoU.755", "GEM-Tiny-S-GSD-20x-IoU.770", "README.md"]
    assert remote.choose_file(ORIGINAL_REPO, release) == "GEM-Tiny-S-GSD-20x-IoU.770"
    with pytest.raises(CheckpointError, match="no weights file"):
        remote.choose_file("a/b", ["README.md", "config.json"])


def test_push_to_hub_uploads_save_pretrained_and_loads_back(tmp_path, hub_cache, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, *, repo_id, folder_path, commit_message, revision, create_pr):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, files, commit_message, revision, create_pr))
            shutil.copytree(folder_path, tmp_path / "uploaded")  # what the Hub would now hold
            return "commit-info"

    monkeypatch.setattr(remote, "HfApi", FakeApi)
    model = _debug(seed=3)
    assert model.push_to_hub("me/my-gem", private=True, token="tok", commit_message="first") == "commit-info"
    assert calls == [
        ("init", "tok"),
        ("create_repo", "me/my-gem", True, True),
        ("upload_folder", "me/my-gem", ["config.json", "model.safetensors"], "first", None, False),
    ]
    uploaded = tmp_path / "uploaded"
    put_in_cache(hub_cache, "me/my-gem", {f.name: f for f in uploaded.iterdir()})
    assert _same_weights(GEM.from_pretrained("me/my-gem"), model)
    # a model fused for inference has lost weights (folded BatchNorms): refused before any upload
    calls.clear()
    model._fused = True
    with pytest.raises(CheckpointError, match="fused"):
        model.push_to_hub("me/other")
    assert calls == []
