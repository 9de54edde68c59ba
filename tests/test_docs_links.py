"""The documentation is a connected reference: every relative link in README.md, docs/ and the model cards
reaches an existing file (and, for a markdown page, an existing heading when it names an anchor); every
`docs/PAGE.md#anchor` that a source comment names resolves; nothing points at design notes that live
outside the repository; and the reference pages (all but docs/history/) tell no lab-notebook story."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "docs" / "history"
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_REF = re.compile(r"\b(docs/[\w/.-]+\.md)((?:#[\w-]+)?(?:, #[\w-]+)*)")


def pages() -> list[Path]:
    """README.md, every markdown page under docs/ and every shipped model card."""
    cards = sorted((ROOT / "src" / "glassgem" / "weights").glob("*/MODEL_CARD.md"))
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *cards]


def reference_pages() -> list[Path]:
    """The pages that describe the code as it is: all but the history folder."""
    return [p for p in pages() if HISTORY not in p.parents]


def prose(page: Path) -> str:
    """A page's text without its fenced code blocks."""
    return FENCE.sub("", page.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link keeps its words
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown page (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(page), flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken(source: Path, target: Path, anchor: str) -> str | None:
    """Why a link from `source` to `target#anchor` does not resolve, or None when it does."""
    if not target.exists():
        return "no such file"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"no heading #{anchor} in {target.relative_to(ROOT)}"
    return None


def test_slug_follows_githubs_rules():
    assert slug("The paper's Table 3 at CPU scale") == "the-papers-table-3-at-cpu-scale"
    assert slug("Discerning query selection (DQS)") == "discerning-query-selection-dqs"
    assert slug("`glassgem predict` end to end") == "glassgem-predict-end-to-end"
    assert slug("int8 (onnxruntime)") == "int8-onnxruntime"


def test_relative_links_reach_files_and_headings():
    problems = []
    for page in pages():
        for target in LINK.findall(prose(page)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = page if not path else (page.parent / path).resolve()
            why = broken(page, dest, anchor)
            if why:
                problems.append(f"{page.relative_to(ROOT)}: ({target}) {why}")
    assert not problems, "\n".join(problems)


def test_docs_pages_named_in_source_comments_resolve():
    """`docs/original.md#mask-decoder` in a docstring, `docs/speed.md` in a help text: the page exists,
    and so does every anchor (also `docs/original.md#a, #b`)."""
    problems, checked = [], 0
    for path in sorted(
        [*(ROOT / "src").rglob("*.py"), *(ROOT / "src").rglob("*.toml"), *(ROOT / "tests").glob("*.py")]
    ):
        if path.name == Path(__file__).name:  # its docstrings show the pattern
            continue
        for page, tail in DOC_REF.findall(path.read_text()):
            for anchor in re.findall(r"#([\w-]+)", tail) or [""]:
                checked += 1
                why = broken(path, ROOT / page, anchor)
                if why:
                    problems.append(f"{path.relative_to(ROOT)}: {page}#{anchor}: {why}")
    assert checked > 20, "the source comments name docs pages; the pattern found too few"
    assert not problems, "\n".join(problems)


OUTSIDE = re.compile(r"GEM_ORIGINAL\.md|\bDESIGN\.md|\bMETRICS\.md|SYNTHESIS\.md|shared/design|SELECTION_RULE")


def test_nothing_points_at_design_notes_outside_the_repository():
    files = [*pages(), *(ROOT / "src").rglob("*.py"), *(ROOT / "src").rglob("*.toml"), *(ROOT / "tests").glob("*.py")]
    files += [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks").glob("*.sh")]
    hits = [
        f"{path.relative_to(ROOT)}: {m.group(0)}"
        for path in files
        if path.name != Path(__file__).name
        for m in OUTSIDE.finditer(path.read_text())
    ]
    assert not hits, hits


NOTEBOOK = re.compile(r"\b20\d\d-\d\d-\d\d\b|\bround \d|\bsessions?\b|\bfixed at\b|\b\d\d:\d\d UTC\b", re.IGNORECASE)


def test_reference_pages_tell_no_lab_notebook_story():
    """Dates, selection rounds, sessions and the time a rule was fixed belong to docs/history/."""
    hits = [
        f"{page.relative_to(ROOT)}: {m.group(0)!r}"
        for page in reference_pages()
        for m in NOTEBOOK.finditer(page.read_text())
    ]
    assert not hits, hits
