"""`glassgem data check | negatives | crops | paste | mix | photos | real-scenes`: dataset checks, crops and corpora."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import GlassgemError
from .common import _add_group, _pair_folders, _refuse_writing_inputs


# `glassgem data <what>`: dataset tools.
def _add_data(sub: argparse._SubParsersAction) -> None:
    _add_group(
        sub,
        "data",
        "dataset tools (check a dataset before training or evaluation; glass-free crops)",
        (
            _add_data_check,
            _add_data_negatives,
            _add_data_crops,
            _add_data_paste,
            _add_data_mix,
            _add_data_photos,
            _add_data_real_scenes,
        ),
    )


def _add_data_check(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "check",
        help="report every problem of a dataset at once (exit 1 if there is any error)",
        description="Scan image/mask pairs and list unreadable files, missing or orphan masks, size "
        "mismatches, duplicate stems and empty folders (errors), and non-binary or empty masks (warnings).",
    )
    p.add_argument("dir", nargs="?", default=None, help="dataset folder (optional with --images/--masks)")
    p.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "gsds", "gdd", "gsd", "sgsd"),
        help="folder layout (default: auto-detect)",
    )
    p.add_argument("--split", default=None, help="train, val or test (default: every split found)")
    p.add_argument("--images", default=None, help="images folder (with --masks; relative to DIR if given)")
    p.add_argument("--masks", default=None, help="masks folder (with --images)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--strict", action="store_true", help="count warnings as errors")
    p.set_defaults(func=_run_data_check)


def _run_data_check(args: argparse.Namespace) -> int:
    from ..data.checks import check_dataset
    from ..io import atomic_write_text

    if args.dir is None and args.images is None:
        raise GlassgemError("data check: give a dataset folder, or --images and --masks")
    report = check_dataset(
        args.dir, layout=args.layout, split=args.split, images=args.images, masks=args.masks, strict=args.strict
    )  # progress bar on big sets
    print(report.to_text())
    folders = [s[k] for s in report.splits for k in ("images_dir", "masks_dir")]
    _refuse_writing_inputs({"--json": args.json}, [args.images, args.masks, *folders], roots=[args.dir])
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.ok else 1


def _add_crop_source(p: argparse.ArgumentParser, out_help: str) -> None:
    """The dataset a crop writer reads (DIR, --layout, --split) and its --out."""
    p.add_argument("dir", help="dataset folder (any known layout)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "gsds", "gdd", "gsd", "sgsd"),
        help="folder layout (default: auto-detect)",
    )
    p.add_argument("--split", default=None, help="train, val or test (default: auto)")


def _add_data_negatives(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "negatives",
        help="crop the largest glass-free rectangle of every photo (negatives: measure or train false glass)",
        description="For every image/mask pair, cut the largest rectangle that holds no glass (aspect at most "
        "--max-aspect) and write it to OUT/images/<stem>.png with an all-background mask in OUT/masks/. "
        "`glassgem evaluate --data OUT` then measures false glass (MAE = mean fraction predicted as glass; "
        "IoU = fraction of crops with none); OUT can also be mixed into training data.",
    )
    _add_crop_source(p, "output folder (images/, masks/, negatives.json)")
    p.add_argument(
        "--min-side",
        type=int,
        default=128,
        help="skip photos whose glass-free rectangle has a side shorter than this (pixels)",
    )
    p.add_argument("--max-aspect", type=float, default=2.0, help="longest / shortest side of a crop at most")
    p.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="write only N of the eligible crops, drawn with --seed (e.g. a set share for training)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument(
        "--prefix",
        default="",
        help="put this before every crop's name (e.g. neg_, to mix the crops "
        "into the folder of the photos they came from)",
    )
    p.set_defaults(func=_run_data_negatives)


def _run_data_negatives(args: argparse.Namespace) -> int:
    from ..data.layouts import find_pairs
    from ..data.negatives import glass_free_crops

    if args.prefix and (any(c in args.prefix for c in "/\\:\0") or args.prefix.startswith(".")):
        raise GlassgemError(
            f"--prefix {args.prefix!r}: must be a plain part of a file name (no /, \\, : or "
            "leading .), so every crop stays inside --out"
        )
    pairs = find_pairs(args.dir, args.layout, args.split)
    summary = glass_free_crops(
        pairs,
        args.out,
        min_side=args.min_side,
        max_aspect=args.max_aspect,
        sample=args.sample,
        seed=args.seed,
        prefix=args.prefix,
    )
    print(f"{summary.line()} in {args.out} (from {len(pairs)} photos)")
    return 0


def _pair_range(text: str, option: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(",")
    try:
        return float(lo), float(hi if sep else lo)
    except ValueError:
        raise GlassgemError(f"{option} {text!r}: give LO,HI (two numbers)") from None


def _add_data_crops(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "crops",
        help="random crops of labelled photos whose glass share lies in a range (low-glass test sets)",
        description="From every image/mask pair, cut up to --per-image random crops (a fraction of the photo's "
        "side drawn from --size, the photo's aspect kept) whose glass share lies in --share, and write them to "
        "OUT/images + OUT/masks with OUT/crops.json (settings and boxes). The draw depends only on --seed and "
        "each photo's name, so the set is reproducible. `glassgem evaluate --data OUT` then shows whether a "
        "model finds glass where it is a small part of the view or paints the whole crop.",
    )
    _add_crop_source(p, "output folder (new or empty)")
    p.add_argument("--share", default="0.05,0.35", help="glass share of a crop, LO,HI (default 0.05,0.35)")
    p.add_argument(
        "--size", default="0.35,0.70", help="crop side as a fraction of the photo's, LO,HI (default 0.35,0.70)"
    )
    p.add_argument("--per-image", type=int, default=2, help="crops per photo at most (default 2)")
    p.add_argument("--tries", type=int, default=200, help="random boxes tried per photo (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.set_defaults(func=_run_data_crops)


def _run_data_crops(args: argparse.Namespace) -> int:
    from ..data.crops import share_crops
    from ..data.layouts import find_pairs

    pairs = find_pairs(args.dir, args.layout, args.split)
    _refuse_writing_inputs({"--out": args.out}, _pair_folders(pairs), files=(), roots=[args.dir])
    record = share_crops(
        pairs,
        args.out,
        share=_pair_range(args.share, "--share"),
        size=_pair_range(args.size, "--size"),
        per_image=args.per_image,
        tries=args.tries,
        seed=args.seed,
    )
    shares = [c["glass"] for c in record["crops"]]
    mean = sum(shares) / len(shares)
    print(
        f"{len(shares)} crops from {len(pairs)} photos in {args.out} (glass share mean {mean:.3f}; "
        f"{len(record['no_crop'])} photos gave none)"
    )
    return 0


def _add_data_paste(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "paste",
        help="real glass pasted small into labelled photos (scenes where glass is a small part of the view)",
        description="Write --n photos, each a photo of --onto with one glass region of DIR pasted into it: the "
        "region's box grown by --margin (so the frame around the pane comes along), scaled so that its glass "
        "covers a share of the photo drawn from --share, flipped at random and faded in at its border. Masks "
        "follow (the piece's where it shows, the photo's elsewhere). Both sets must be labelled; --onto may "
        "hold glass-free photos (all-zero masks) and photos with glass. OUT/paste.json records every output's "
        "sources and placement; output k depends only on --seed and k.",
    )
    _add_crop_source(p, "output folder (new or empty)")
    p.add_argument("--onto", required=True, metavar="DIR", help="labelled photos to paste into (any layout)")
    p.add_argument("--n", type=int, default=500, help="photos to write (default 500)")
    p.add_argument("--share", default="0.01,0.10", help="glass share of the pasted piece, LO,HI (default 0.01,0.10)")
    p.add_argument("--margin", type=float, default=0.25, help="box grown by this x its size a side (default 0.25)")
    p.add_argument("--feather", type=float, default=0.08, help="border fade, x the piece's shorter side (0.08)")
    p.add_argument(
        "--min-share", type=float, default=0.003, help="smallest glass region used, share of its photo (0.003)"
    )
    p.add_argument("--max-side", type=int, default=1024, help="photos scaled down to this longer side (1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.set_defaults(func=_run_data_paste)


def _run_data_paste(args: argparse.Namespace) -> int:
    from ..data.layouts import find_pairs
    from ..data.paste import paste_glass

    glass = find_pairs(args.dir, args.layout, args.split)
    onto = find_pairs(args.onto, "auto", None)
    folders = _pair_folders(glass) | _pair_folders(onto)
    _refuse_writing_inputs({"--out": args.out}, folders, files=(), roots=[args.dir, args.onto])
    record = paste_glass(
        glass,
        onto,
        args.out,
        n=args.n,
        share=_pair_range(args.share, "--share"),
        margin=args.margin,
        feather=args.feather,
        min_share=args.min_share,
        max_side=args.max_side,
        seed=args.seed,
    )
    pasted = [o["pasted_share"] for o in record["outputs"]]
    print(
        f"{len(pasted)} photos in {args.out} ({record['pieces']} glass regions of {len(glass)} photos pasted into "
        f"{len(onto)}; pasted glass share mean {sum(pasted) / len(pasted):.3f})"
    )
    return 0


def _add_data_mix(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "mix",
        help="one training folder from several labelled sets, each listed K times (links, no copies)",
        description="Write OUT/images + OUT/masks as links to the pairs of every SET (any layout), a set given "
        "as DIR:K listed K times, so training draws it K times as often; DIR:K:SPLIT picks a split of a "
        "dataset folder. Entries are named <tag>__<stem> (tag: the set's position and folder name) and "
        "OUT/mix.json records the sets. Example (the default model's real-scene mix): glassgem data mix "
        "--out scenes gdd-dev:1:train crops-train neg-train:2 photos/train:2 rs/train:8 rs/train2:8 rs/train3:8",
    )
    p.add_argument("sets", nargs="+", metavar="SET", help="DIR, DIR:K or DIR:K:SPLIT")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    p.set_defaults(func=_run_data_mix)


def _run_data_mix(args: argparse.Namespace) -> int:
    from ..data.mix import build_mix, parse_part

    parts = [parse_part(text) for text in args.sets]
    _refuse_writing_inputs({"--out": args.out}, [p.folder for p in parts], files=())
    record = build_mix(parts, args.out, copy=args.copy)
    sets = ", ".join(f"{s['pairs']} x{s['times']} from {s['folder']}" for s in record["sets"])
    print(f"{record['files']} files in {args.out} ({sets})")
    return 0


def _add_data_photos(data_sub: argparse._SubParsersAction) -> None:
    from ..data.photos import DEBIAN_PACKAGES, HELDOUT_SOURCES, PYTHON_PACKAGES

    p = data_sub.add_parser(
        "photos",
        help="build a corpus of real glass-free photos from installed packages (train/ and held-out/ by source)",
        description="Gather the glass-free photos that installed packages ship (Debian desktop backgrounds: "
        f"{', '.join(DEBIAN_PACKAGES)}; the sample photos of {', '.join(PYTHON_PACKAGES)}) and any --folder, "
        "drop unreadable files, resolution variants, near-duplicates and photos checked by eye to show glass, "
        "split them by source and write OUT/train and OUT/heldout (images/ + all-zero masks/), "
        "OUT/manifest.jsonl (source, licence, original file), OUT/dropped.jsonl and contact sheets. "
        "Install the Debian sources first: apt-get install " + " ".join(DEBIAN_PACKAGES),
    )
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="SOURCE=DIR",
        help="also read the photos of DIR as source SOURCE (repeatable)",
    )
    p.add_argument("--only-folders", action="store_true", help="read only the --folder sources, no packages")
    p.add_argument(
        "--heldout",
        default=",".join(HELDOUT_SOURCES),
        metavar="SRC,SRC",
        help=f"sources used only to measure false glass (default: {','.join(HELDOUT_SOURCES)})",
    )
    p.add_argument(
        "--crops", type=int, default=3, help="random crops per training photo besides the whole photo (default 3)"
    )
    p.add_argument(
        "--long-side", type=int, default=640, help="scale photos down to this long side (default 640, as gdd-dev)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the crops (default 0)")
    p.add_argument("--keep-all", action="store_true", help="keep the photos excluded by eye (to look at them again)")
    p.set_defaults(func=_run_data_photos)


def _run_data_photos(args: argparse.Namespace) -> int:
    from ..data.photos import build_corpus, installed_photos

    folders = {}
    for item in args.folder:
        source, sep, folder = item.partition("=")
        if not sep or not source or not folder:
            raise GlassgemError(f"--folder {item!r}: expected SOURCE=DIR, e.g. --folder myphotos=~/pictures")
        folders[source] = folder
    if args.only_folders:
        photos, missing = installed_photos((), (), folders)
    else:
        photos, missing = installed_photos(folders=folders)
    if missing:
        print(f"note: no photos from {', '.join(missing)} (not installed)")
    heldout = tuple(s for s in args.heldout.split(",") if s)
    corpus = build_corpus(
        photos,
        args.out,
        heldout=heldout,
        crops=args.crops,
        long_side=args.long_side,
        seed=args.seed,
        keep_all=args.keep_all,
    )
    print(corpus.line())
    return 0


def _add_data_real_scenes(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "real-scenes",
        help="rebuild the hand-labelled real-scene sets (photos from their pinned repositories + shipped masks)",
        description="glassgem ships glass polygons for public photos of whole scenes, never the photos. This reads "
        "every photo of the manifest from its repository at the pinned commit and writes OUT/<split>/images and "
        "OUT/<split>/masks (masks drawn from the polygons). --from is a folder holding the repositories (clones "
        "or bare: DIR/owner+name, DIR/owner/name or DIR/name) or a URL prefix to clone them from, e.g. "
        "https://github.com. Resumes: files already written are kept.",
    )
    p.add_argument(
        "--from",
        dest="origin",
        required=True,
        metavar="DIR_OR_URL",
        help="folder of repositories, or a URL prefix (PREFIX/owner/name is cloned)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--split",
        default="all",
        choices=("all", "train", "train2", "train3", "train4", "dev"),
        help="which split (default all)",
    )
    p.add_argument("--manifest", default=None, help="another manifest.csv (default: the shipped one)")
    p.add_argument("--labels", default=None, help="another labels folder (default: the shipped one)")
    p.add_argument("--sheet", action="store_true", help="also draw OUT/<split>/sheet.jpg: every photo, glass tinted")
    p.set_defaults(func=_run_data_real_scenes)


def _run_data_real_scenes(args: argparse.Namespace) -> int:
    from ..data import real_scenes as rs

    splits = rs.SPLITS if args.split == "all" else (args.split,)
    local = args.origin if Path(args.origin).exists() else None
    _refuse_writing_inputs(
        {"--out": args.out}, [local, args.manifest or rs.MANIFEST, args.labels or rs.LABELS], files=()
    )
    counts = rs.rebuild(
        args.origin, args.out, splits, manifest=args.manifest or rs.MANIFEST, labels=args.labels or rs.LABELS
    )
    for split, n in counts.items():
        line = f"{split}: {n} photos with masks in {args.out}/{split}"
        if args.sheet and n:
            line += f" (contact sheet {rs.write_sheet(f'{args.out}/{split}')})"
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data` to the `glassgem` subcommands."""
    _add_data(sub)
