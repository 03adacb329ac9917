"""Shared fixtures: every test is seeded, writes figures to a temp folder and runs single-threaded
(two xdist workers share the two cores)."""

from __future__ import annotations

import os

import pytest
import torch

from mhe.utils import seed_everything

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path_factory, monkeypatch):
    seed_everything(0)
    figs = tmp_path_factory.mktemp("figures")
    monkeypatch.setenv("MHE_FIGURES_DIR", str(figs))
    yield


@pytest.fixture(scope="session")
def figures_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("figures_session")
