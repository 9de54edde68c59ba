"""The 23 prompts, prompt files and the single-prompt ablation."""

from __future__ import annotations

import pytest

from glassgem.errors import ConfigError
from glassgem.synth.diffusion.prompts import DEFAULT_OBJECT, TEMPLATES, expand, load_prompts, select_prompts

PAPER_GIVEN = ("a photo of a clean {}", "a close-up photo of the {}", "a rendition of the {}")


def test_23_distinct_prompts_with_the_papers_three_first():
    prompts = expand("transparent glasses")
    assert len(TEMPLATES) == 23 and len(prompts) == 23
    assert len(set(prompts)) == 23
    assert prompts[:3] == tuple(t.format("transparent glasses") for t in PAPER_GIVEN)
    assert all("transparent glasses" in p and "{" not in p for p in prompts)


def test_expand_with_the_other_object_name():
    prompts = expand("transparent glass")
    assert prompts[0] == "a photo of a clean transparent glass"
    assert all("transparent glass" in p and "glasses" not in p for p in prompts)
    with pytest.raises(ConfigError):
        expand("  ")


def test_default_object_is_the_papers():
    assert DEFAULT_OBJECT == "transparent glasses"
    assert select_prompts() == expand(DEFAULT_OBJECT)


def test_single_prompt_is_the_first():
    assert select_prompts(single=True) == ("a photo of a clean transparent glasses",)


def test_load_prompts_skips_comments_and_blank_lines(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("# my prompts\n\na glass door\n   \n  a {object} wall  \n# end\n", encoding="utf-8")
    assert load_prompts(f) == ("a glass door", "a transparent glasses wall")
    assert load_prompts(f, object_name="window") == ("a glass door", "a window wall")
    assert select_prompts(f, single=True) == ("a glass door",)


def test_empty_or_missing_prompts_file_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty.txt.*no prompts"):
        load_prompts(empty)
    with pytest.raises(ConfigError, match="missing.txt.*not found"):
        load_prompts(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="binary.txt.*cannot read"):
        load_prompts(binary)
