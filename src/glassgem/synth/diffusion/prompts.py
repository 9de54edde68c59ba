"""The text prompts that caption ControlNet fine-tuning and S-GSD generation.

The paper used 23 prompts for diversity and names three of them: "a photo of a clean <object>",
"a close-up photo of the <object>", "a rendition of the <object>", with <object> = "transparent
glasses". The other 20 here are glassgem's, written in the same CLIP-template style and all about
glass surfaces (windows, doors, partitions, shop fronts, ...). The paper's ablation trains with the
first prompt only (`single=True`): zero-shot IoU .690 with one prompt vs .703 with all.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import ConfigError

# The paper's wording ("glasses" is theirs); "transparent glass" is the other form it mentions.
DEFAULT_OBJECT = "transparent glasses"
PLACEHOLDER = "{object}"

TEMPLATES: tuple[str, ...] = (
    # the three given in the paper, first so that the single-prompt ablation uses the paper's own
    "a photo of a clean {object}",
    "a close-up photo of the {object}",
    "a rendition of the {object}",
    # glassgem's 20, same style
    "a photo of the {object} in a window",
    "a photo of a door made of {object}",
    "a photo of an office partition of {object}",
    "a photo of a shop front with large {object}",
    "a photo of the {object} wall of a modern building",
    "a bright photo of the {object} in a living room",
    "a dark photo of the {object} at night",
    "a photo of the {object} reflecting the room",
    "a blurry photo of the {object}",
    "a cropped photo of the {object} in a corridor",
    "a low resolution photo of the {object}",
    "a good photo of the {object} in a kitchen",
    "a photo of the large {object} in a shopping mall",
    "a photo of a sliding door of {object} to a balcony",
    "a photo of the {object} railing on a staircase",
    "a photo of a museum display case of {object}",
    "a photo of the {object} in a meeting room",
    "a photo of a bus stop shelter of {object}",
    "a photo of the dirty {object} in a bathroom",
    "an indoor photo of the {object} with sunlight",
)


def expand(object_name: str = DEFAULT_OBJECT, templates: tuple[str, ...] = TEMPLATES) -> tuple[str, ...]:
    """The templates with `{object}` replaced, e.g. expand("transparent glass")."""
    if not object_name.strip():
        raise ConfigError("the prompt object name is empty")
    return tuple(t.replace(PLACEHOLDER, object_name.strip()) for t in templates)


def load_prompts(path: str | os.PathLike, object_name: str = DEFAULT_OBJECT) -> tuple[str, ...]:
    """Prompts from a text file: one per line; blank lines and lines starting with '#' are ignored.

    A line may use `{object}`, which is replaced by `object_name`, so a file of templates works too.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: prompts file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read prompts file ({type(e).__name__}: {e})") from None
    lines = [line.strip() for line in text.splitlines()]
    prompts = tuple(line.replace(PLACEHOLDER, object_name) for line in lines if line and not line.startswith("#"))
    if not prompts:
        raise ConfigError(f"{path}: prompts file has no prompts (only blank lines or '#' comments)")
    return prompts


def select_prompts(
    prompts_file: str | os.PathLike | None = None,
    single: bool = False,
    object_name: str = DEFAULT_OBJECT,
) -> tuple[str, ...]:
    """What `--prompts FILE` and `--single-prompt` mean: the file's prompts (or the 23), and with
    `single` only the first of them (the paper's one-prompt ablation)."""
    prompts = load_prompts(prompts_file, object_name) if prompts_file else expand(object_name)
    return prompts[:1] if single else prompts
