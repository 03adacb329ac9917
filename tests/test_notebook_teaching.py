"""The tutorials follow the teaching conventions (CONTRIBUTING.md, "Notebooks").

Every notebook opens with what it teaches and what it assumes, ends with a summary, exercises and a link
to the next notebook, cites the papers and links the glossary. Each exercise has a hidden solution cell
(tagged ``solution``, source collapsed); at least one exercise per notebook has a checker (a cell tagged
``checker`` that asserts what a correct answer must satisfy) which a solution calls. These checks read
the stored notebooks; ``tests/test_notebooks.py`` executes them (solutions included) in smoke mode and
checks that every figure they save is shown inline.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from mhe.lab.notebooks import list_notebooks

NOTEBOOKS = list_notebooks()
IDS = [p.stem for p in NOTEBOOKS]
EXERCISE = re.compile(r"^#{2,4}\s*Exercise\s+\d+", re.M)
MHENTROPY_LINK = "openaccess.thecvf.com/content/ICCV2023"
PROHMR_LINK = "arxiv.org/abs/2108.11944"


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _src(cell) -> str:
    return "".join(cell.get("source", []))


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _markdown(path) -> str:
    return "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_opens_with_what_it_teaches_and_assumes(path):
    first = _src(_cells(path)[0])
    assert first.startswith("# "), f"{path.name}: the first cell must be a markdown title"
    assert re.search(r"you will learn|this notebook teaches", first, re.I), (
        f"{path.name}: the first cell must say what the notebook teaches ('You will learn ...')")
    assert re.search(r"assumes|prerequisites|you need", first, re.I), (
        f"{path.name}: the first cell must say what the notebook assumes")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_has_three_exercises_with_hidden_solutions(path):
    cells = _cells(path)
    exercises = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and EXERCISE.search(_src(c))]
    assert len(exercises) >= 3, f"{path.name}: {len(exercises)} exercises ('### Exercise N ...'), want >= 3"
    solutions = [c for c in cells if c["cell_type"] == "code" and "solution" in _tags(c)]
    assert len(solutions) >= len(exercises), f"{path.name}: every exercise needs a cell tagged 'solution'"
    for k, start in enumerate(exercises):
        end = exercises[k + 1] if k + 1 < len(exercises) else len(cells)
        assert any("solution" in _tags(c) for c in cells[start:end]), (
            f"{path.name}: exercise {k + 1} has no solution cell after it")
    for c in solutions:
        assert c.get("metadata", {}).get("jupyter", {}).get("source_hidden") is True, (
            f"{path.name}: a solution cell must start collapsed (metadata.jupyter.source_hidden = true):\n"
            + _src(c)[:200])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_an_exercise_has_a_checker_that_a_solution_calls(path):
    cells = _cells(path)
    checkers = [c for c in cells if c["cell_type"] == "code" and "checker" in _tags(c)]
    assert checkers, f"{path.name}: no cell tagged 'checker'"
    names = set()
    for c in checkers:
        tree = ast.parse(_src(c))
        assert any(isinstance(n, ast.Assert) or (isinstance(n, ast.Raise)) for n in ast.walk(tree)), (
            f"{path.name}: a checker must assert what a correct answer satisfies")
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert names, f"{path.name}: a checker cell must define a check function the student calls"
    solutions = "\n".join(_src(c) for c in cells if "solution" in _tags(c))
    assert any(re.search(rf"\b{name}\(", solutions) for name in names), (
        f"{path.name}: no solution calls a checker ({sorted(names)})")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_closes_with_a_summary_and_the_next_step(path):
    text = _markdown(path)
    assert re.search(r"^#{2,3}\s*(Summary|What to take away)", text, re.M | re.I), f"{path.name}: no summary section"
    i = NOTEBOOKS.index(path)
    if i + 1 < len(NOTEBOOKS):
        assert NOTEBOOKS[i + 1].name in text, f"{path.name}: no link to the next notebook {NOTEBOOKS[i + 1].name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_cites_the_papers_and_links_the_glossary(path):
    text = _markdown(path)
    assert MHENTROPY_LINK in text, f"{path.name}: cite the MHEntropy paper (a link to {MHENTROPY_LINK}...)"
    assert "docs/glossary.md" in text, f"{path.name}: link the glossary (../docs/glossary.md)"


def test_prohmr_is_cited_where_nll_is_taught():
    for path in NOTEBOOKS:
        text = _markdown(path)
        if "ProHMR" in text:
            assert PROHMR_LINK in text, f"{path.name} names ProHMR: cite it ({PROHMR_LINK})"


def test_nothing_in_the_package_chooses_a_matplotlib_backend():
    from mhe.utils import REPO_ROOT

    offenders = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "mhe").rglob("*.py")
                 if re.search(r"matplotlib\.use\(|pyplot\.switch_backend\(", p.read_text(encoding="utf-8"))]
    assert not offenders, f"these modules choose a matplotlib backend (figures vanish from notebooks): {offenders}"
