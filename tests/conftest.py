"""Shared fixtures: every test is seeded, writes figures to a temp folder and runs single-threaded
(two xdist workers share the two cores)."""

from __future__ import annotations

import dummy_experiment as dummy
import pytest
import torch

from mhe.lab.config_io import dump_config
from mhe.utils import seed_everything

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path_factory, monkeypatch):
    seed_everything(0)
    figs = tmp_path_factory.mktemp("figures")
    monkeypatch.setenv("MHE_FIGURES_DIR", str(figs))
    yield


@pytest.fixture(scope="module")
def mano():
    """The MANO hand model (the stand-in where no real file is installed; its notice silenced)."""
    import warnings

    from mhe.body import load_mano

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mano()


@pytest.fixture(scope="session")
def figures_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("figures_session")


@pytest.fixture
def registered(monkeypatch):
    """The dummy Gaussian experiment and its objective "dummy", registered for the test's duration."""
    objectives = pytest.importorskip("mhe.objectives")
    dummy.register()
    monkeypatch.setitem(objectives.OBJECTIVES, "dummy", dummy.reverse_kl)


@pytest.fixture
def config_file(tmp_path):
    """A YAML config of the dummy experiment writing its run under ``tmp_path``."""
    path = tmp_path / "dummy.yaml"
    dump_config(dummy.small_config(tmp_path), path)
    return path
