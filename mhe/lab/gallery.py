"""The README's gallery: every figure in ``figures/`` with the caption its notebook gives it.

:func:`figure_captions` reads the captions from the notebooks: a ``# caption: ...`` comment in the cell that
saves the figure (or ``# caption <name>: ...`` for one of several figures a cell saves), else the first
sentence of the markdown cell above it; a script in ``tools/`` captions a figure it writes with
``# caption <name>: ...``. :func:`gallery` lays every PNG out with its caption, grouped by notebook: the
README's ``gallery`` block (:data:`mhe.lab.report.BLOCKS`) and the book's gallery page.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["figure_captions", "gallery"]

_SAVE = re.compile(r'save_figure\(\s*[^,()]+,\s*(f?)"([^"]+)"')
_CAPTION = re.compile(r"#\s*caption(?:\s+([\w.-]+))?\s*:\s*(.+?)\s*$")


def _markdown_caption(text: str) -> str:
    """A caption from a markdown cell: its heading (without the section number), then the first sentence
    of the text below it; or the first sentence of a cell without a heading."""
    lines = [line.strip() for line in text.strip().splitlines()]
    heading = ""
    if lines and lines[0].startswith("#"):
        heading = re.sub(r"^#+\s*(\d+\s*·\s*)?", "", lines.pop(0)).strip()
    body = " ".join(line for line in lines if line and not line.startswith("#"))
    sentence = body.split(". ")[0].strip().rstrip(".").replace("**", "")
    caption = f"{heading}: {sentence}" if heading and sentence else heading or sentence
    return caption if not caption or caption.endswith((".", "?", "!")) else caption + "."


def figure_captions(notebooks: Path) -> dict[str, tuple[str, str]]:
    """``{figure name or pattern: (notebook stem, caption)}`` for every ``save_figure(fig, "<name>")`` in the
    notebooks ``NN_*.ipynb`` of ``notebooks``. A name written as an f-string is a pattern (each ``{...}``
    a wildcard, ``*``). The caption: ``# caption <name>: ...`` for that name, else the nearest
    ``# caption: ...`` above the call in its cell, else the first sentence of the markdown cell above. A
    script in ``tools/`` next to ``notebooks`` captions a figure it writes with ``# caption <name>: ...``
    (its source is then ``tools/<script>.py``)."""
    import json

    out: dict[str, tuple[str, str]] = {}
    for path in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        markdown = ""
        for cell in nb.get("cells", []):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                markdown = src
                continue
            if cell["cell_type"] != "code":
                continue
            pending = None
            for line in src.splitlines():
                cap = _CAPTION.search(line)
                if cap:
                    if cap.group(1):
                        out[cap.group(1)] = (path.stem, cap.group(2))
                    else:
                        pending = cap.group(2)
                    continue
                for match in _SAVE.finditer(line):
                    name = re.sub(r"\{[^}]*\}", "*", match.group(2)) if match.group(1) else match.group(2)
                    out.setdefault(name, (path.stem, pending or _markdown_caption(markdown)))
                    pending = None
    tools = Path(notebooks).resolve().parent / "tools"
    for path in sorted(tools.glob("*.py")):  # figures a tool writes (e.g. a browser screenshot)
        for line in path.read_text().splitlines():
            cap = _CAPTION.search(line)
            if cap and cap.group(1):
                out.setdefault(cap.group(1), (f"tools/{path.name}", cap.group(2)))
    return out


def _caption_of(stem: str, captions: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    if stem in captions:
        return captions[stem]
    for pattern, value in captions.items():
        if "*" in pattern and re.fullmatch(".+".join(re.escape(p) for p in pattern.split("*")), stem):
            return value
    return None


def gallery(figures: Path, notebooks: Path | None = None) -> str:
    """The README's gallery: every ``figures/*.png`` as a thumbnail with its notebook's caption
    (:func:`figure_captions`), grouped by notebook. A PNG that no notebook saves is listed as such."""
    from mhe.utils import REPO_ROOT

    notebooks = Path(notebooks) if notebooks is not None else REPO_ROOT / "notebooks"
    captions = figure_captions(notebooks)
    groups: dict[str, list[str]] = {}
    for png in sorted(Path(figures).glob("*.png")):
        found = _caption_of(png.stem, captions)
        source, caption = found if found is not None else ("", "(no notebook saves this figure)")
        row = f'| <img src="figures/{png.name}" width="240"> | `{png.name}`: {caption} |'
        groups.setdefault(source, []).append(row)
    lines = ["## Gallery", "", "Every figure in `figures/`, with the caption its notebook gives it (written by "
             "`python -m mhe.lab.report` from the notebooks' `# caption:` comments)."]
    for source, rows in groups.items():
        header = (f"**`{source}`**" if source.endswith(".py") else f"**`notebooks/{source}.ipynb`**" if source
                  else "**not saved by any notebook**")
        lines += ["", header, "",
                  "| figure | caption |", "|---|---|", *rows]
    return "\n".join(lines)
