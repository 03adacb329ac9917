"""The set-up files agree with each other: environment.yml, pyproject.toml, Makefile, .ci/run."""

from __future__ import annotations

import re
import runpy

from mhe.utils import REPO_ROOT


def test_environment_yml_is_generated_from_pyproject():
    gen = runpy.run_path(str(REPO_ROOT / "tools" / "gen_environment.py"), run_name="gen")
    assert (REPO_ROOT / "environment.yml").read_text() == gen["render"](), (
        "environment.yml is out of date: run `python tools/gen_environment.py`"
    )


def test_torch_pin_is_the_same_everywhere():
    gen = runpy.run_path(str(REPO_ROOT / "tools" / "gen_environment.py"), run_name="gen")
    make = (REPO_ROOT / "Makefile").read_text()
    pin = re.search(r"^TORCH_SPEC\s*\?=\s*(\S+)", make, re.M).group(1)
    assert pin == gen["TORCH_PIN"]


def test_user_asked_packages_are_dependencies():
    text = (REPO_ROOT / "pyproject.toml").read_text()
    for pkg in ["jupyterlab", "torch", "smplx", "matplotlib", "plotly", "seaborn", "pandas", "ipywidgets"]:
        assert re.search(rf'"{pkg}[<>=!~ ]', text), pkg


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make reproduce" in readme
