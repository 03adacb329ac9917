"""The documentation the package cites is in the repository, and it defines every reported metric.

Modules, notebooks and the README cite ``docs/*.md`` (optionally with a section, as
``docs/method.md, "Metrics"`` or ``docs/method.md#metrics``); every cited file and section must exist,
nothing may cite files that only exist outside the repository, and every key that
:func:`mhe.metrics.evaluate` returns must be defined in ``docs/method.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mhe.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# docs/NAME.md, optionally followed by `, "Section"` or `#anchor`
CITATION = re.compile(r"docs/([\w.-]+\.md)(?:,\s*\"([^\"\n]+)\"|#([\w-]+))?")
# relative markdown links between the docs: [text](other.md) or [text](other.md#anchor) or [text](#anchor)
DOC_LINK = re.compile(r"\]\((?!https?:)([\w./-]*\.md)?(?:#([\w-]+))?\)")
# Names of notes that live outside the repository (users never get them): the project's own docs must
# carry what the code cites. Spelled in pieces so that this file does not cite them itself.
FORBIDDEN = tuple("".join(parts) for parts in (("PAPER", ".md"), ("NOTES", ".md"), ("..", "/", "shared")))


def _text(path: Path) -> str:
    """A file's text; for a notebook, the source of its cells (so JSON escaping does not get in the way)."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return "\n".join("".join(cell.get("source", [])) for cell in nb["cells"])
    return path.read_text(encoding="utf-8")


def _citing_files() -> list[Path]:
    files = [p for p in (ROOT / "mhe").rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".md")]
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    files += sorted((ROOT / "tests").rglob("*.json"))  # recorded test ids (tests/durations.json) and test data
    files.append(ROOT / "README.md")
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _headings(path: Path) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+)$", path.read_text(encoding="utf-8"), re.M)]


def _check_section(doc: Path, section: str | None, anchor: str | None, where: str) -> None:
    headings = _headings(doc)
    if section is not None:
        assert any(h == section or h.startswith(section + " ") for h in headings), (
            f"{where} cites section {section!r} of {doc.relative_to(ROOT)}, which has no such heading; "
            f"headings: {headings}"
        )
    if anchor is not None:
        assert anchor in {_slug(h) for h in headings}, (
            f"{where} links to #{anchor} in {doc.relative_to(ROOT)}, which has no such heading; "
            f"anchors: {sorted(_slug(h) for h in headings)}"
        )


def test_docs_exist():
    names = {p.name for p in _doc_files()}
    assert {"method.md", "formats.md"} <= names, f"docs/ holds {sorted(names)}"


def test_cited_docs_and_sections_exist():
    cited = 0
    for path in _citing_files():
        for m in CITATION.finditer(_text(path)):
            cited += 1
            where = str(path.relative_to(ROOT))
            doc = DOCS / m.group(1)
            assert doc.is_file(), f"{where} cites docs/{m.group(1)}, which is not in the repository"
            _check_section(doc, m.group(2), m.group(3), where)
    assert cited > 0, "no module, notebook or README cites docs/*.md; the citation pattern is stale"


def test_links_between_docs_resolve():
    for doc in _doc_files():
        for m in DOC_LINK.finditer(doc.read_text(encoding="utf-8")):
            target = (doc.parent / m.group(1)) if m.group(1) else doc
            where = str(doc.relative_to(ROOT))
            assert target.is_file(), f"{where} links to {m.group(1)}, which does not exist"
            _check_section(target, None, m.group(2), where)


@pytest.mark.parametrize("forbidden", FORBIDDEN, ids=("paper", "notes", "outside-folder"))
def test_nothing_cites_files_outside_the_repository(forbidden):
    offenders = [str(p.relative_to(ROOT)) for p in _citing_files() + _doc_files() if forbidden in _text(p)]
    assert not offenders, f"{offenders} mention {forbidden!r}; cite docs/method.md or docs/formats.md instead"


def test_every_metric_is_defined_in_method_md():
    B, S, J = 4, 5, 21
    g = torch.Generator().manual_seed(0)
    visible = torch.rand(B, J, generator=g) > 0.5
    result = evaluate(
        torch.randn(B, S, J, 3, generator=g),
        torch.randn(B, J, 3, generator=g),
        torch.randn(B, S, J, 2, generator=g),
        torch.randn(B, J, 2, generator=g),
        visible,
        root=4,
    )
    method = (DOCS / "method.md").read_text(encoding="utf-8")
    missing = [key for key in result if f"`{key}`" not in method]
    assert not missing, f"docs/method.md does not define the metrics {missing} that mhe.metrics.evaluate returns"
