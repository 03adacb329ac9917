"""Shared fixtures: every test is seeded, writes figures to a temp folder and runs single-threaded
(two xdist workers share the two cores).

Nothing here imports torch or mhe at module level: the xdist controller, which runs no test, loads this file
too, and would spend seconds of the two cores importing them. The processes that run tests import them in
``pytest_configure`` and in the fixtures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


def _is_xdist_controller(config) -> bool:
    """Whether this process is the controller of an xdist run (it collects and runs no test)."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path_factory, monkeypatch):
    from mhe.utils import seed_everything

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
    import dummy_experiment as dummy

    objectives = pytest.importorskip("mhe.objectives")
    dummy.register()
    monkeypatch.setitem(objectives.OBJECTIVES, "dummy", dummy.reverse_kl)


@pytest.fixture
def config_file(tmp_path):
    """A YAML config of the dummy experiment writing its run under ``tmp_path``."""
    import dummy_experiment as dummy

    from mhe.lab.config_io import dump_config

    path = tmp_path / "dummy.yaml"
    dump_config(dummy.small_config(tmp_path), path)
    return path



# -- scheduling: the longest tests start first ----------------------------------------------------------
# `make test` runs on two xdist workers (`--dist loadgroup`), which take the tests in the order collected. A long
# test that starts last keeps one worker busy while the other has nothing left to do, so the tests are ordered by
# the durations recorded in tests/durations.json, longest first; an xdist_group counts as one unit, as long as its
# tests together. A test not recorded there counts as one second. `make durations` rewrites the file from a
# whole run. The order changes only when a test starts, never what it checks.
DURATIONS = Path(__file__).with_name("durations.json")


def recorded_durations() -> dict[str, float]:
    """tests/durations.json: seconds per test id (setup, call and teardown), empty when missing or unreadable."""
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _group(item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return None
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", ""))


def pytest_collection_modifyitems(config, items):
    _tell_the_controller_the_groups(config, items)
    recorded = recorded_durations()
    if not recorded:
        return
    seconds = {item.nodeid: recorded.get(item.nodeid, 1.0) for item in items}
    groups: dict[str, float] = {}
    for item in items:
        if (name := _group(item)) is not None:
            groups[name] = groups.get(name, 0.0) + seconds[item.nodeid]

    def key(item) -> tuple[float, str]:
        name = _group(item)
        return (-groups[name], name) if name is not None else (-seconds[item.nodeid], "")

    items.sort(key=key)  # stable: a group's tests, and equal durations, keep the order collected
    # what reads the notebook runs (the smoke book) starts right after the last of them, so that it waits least
    later = [item for item in items if item.get_closest_marker("after_notebooks") is not None]
    if later:
        rest = [item for item in items if item.get_closest_marker("after_notebooks") is None]
        last = max((k for k, item in enumerate(rest) if item.get_closest_marker("notebook") is not None), default=-1)
        items[:] = rest[:last + 1] + later + rest[last + 1:]


# -- the notebook runs, for the tests that read them ----------------------------------------------------
# A test marked `after_notebooks` (the smoke book) uses the executed copies the notebook smoke tests (marked
# `notebook`) leave in build/notebooks-smoke/. On two xdist workers such a test may start while the other worker
# still runs one of them: `wait_for_notebook_tests` waits until every notebook test of this run has finished,
# which each one records in build/test-runs/<run id>/ (one id for all the workers of a run).
_LOCAL_RUN = uuid.uuid4().hex
RUNS = Path(__file__).resolve().parents[1] / "build" / "test-runs"


def run_id(config) -> str:
    """This pytest run's id: the same on every xdist worker of the run and on its controller."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput:
        return str(workerinput["testrunuid"])
    return getattr(config.option, "testrunuid", None) or _LOCAL_RUN


def pytest_configure(config):
    # the controller picks the run's id itself (xdist would otherwise draw one it does not tell the controller)
    if not hasattr(config, "workerinput") and hasattr(config.option, "testrunuid") and not config.option.testrunuid:
        config.option.testrunuid = _LOCAL_RUN
    if not _is_xdist_controller(config):  # a process that runs tests: one thread each
        import torch

        torch.set_num_threads(1)
        # ... and so do the processes its tests start (notebook kernels, the command line): two workers already
        # fill two cores, and a second thread in each such process only oversubscribes them (threads spinning at
        # barriers while another process holds the core). A value set by whoever runs the tests is kept.
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def _finished(config, nodeid: str) -> Path:
    return RUNS / run_id(config) / hashlib.sha1(nodeid.encode()).hexdigest()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    if item.get_closest_marker("notebook") is not None:  # passed, failed or skipped: it will not write again
        done = _finished(item.config, item.nodeid)
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(item.nodeid + "\n")


def wait_for_notebook_tests(session, timeout: float = 1200.0) -> list[str]:
    """Wait until every test marked ``notebook`` in this run has finished; return their ids. Fails after
    ``timeout`` s, naming the ones still running (a test run alone, without them, does not wait)."""
    wanted = [item.nodeid for item in session.items if item.get_closest_marker("notebook") is not None]
    end = time.monotonic() + timeout
    while (left := [n for n in wanted if not _finished(session.config, n).exists()]):
        if time.monotonic() > end:
            pytest.fail(f"the notebook tests {left} did not finish within {timeout:.0f} s")
        time.sleep(1.0)
    return wanted


@pytest.fixture(scope="module")
def notebook_runs(request) -> list[str]:
    """The ids of this run's notebook smoke tests, once all of them have finished (see above)."""
    return wait_for_notebook_tests(request.session)


# -- xdist groups -----------------------------------------------------------------------------------------
# `--dist loadgroup` sends the tests of one xdist_group to one worker. pytest-xdist 3.8 marks them by appending
# "@group" to the test's id, which pytest 9 no longer allows (the id is read from another attribute), so every
# test would count as its own group. Instead each worker writes the groups it collected to
# build/test-runs/<run id>/groups.json, and the controller's scheduler reads them from there.


def _tell_the_controller_the_groups(config, items) -> None:
    if not hasattr(config, "workerinput") or config.workerinput.get("workerid") != "gw0":
        return
    groups = {item.nodeid: name for item in items if (name := _group(item)) is not None}
    path = RUNS / run_id(config) / "groups.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}")
    partial.write_text(json.dumps(groups))
    os.replace(partial, path)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown with `-p no:xdist`
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    groups_file = RUNS / run_id(config) / "groups.json"

    class MarkedGroups(LoadGroupScheduling):
        """``loadgroup``, the groups read from the xdist_group markers (see above)."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once, when the workers have collected
                try:
                    self.groups = dict(json.loads(groups_file.read_text()))
                except (OSError, ValueError):
                    self.groups = {}
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return MarkedGroups(config, log)


# MHE_RECORD_DURATIONS=path: the controller (not the xdist workers) adds every test's duration to that JSON file.
_durations: dict[str, float] | None = None


def pytest_sessionstart(session):
    global _durations
    if os.environ.get("MHE_RECORD_DURATIONS") and not hasattr(session.config, "workerinput"):
        _durations = {}
    if getattr(session.config, "workerinput", {}).get("workerid") == "gw0":
        _fit_the_pose_prior()


# On a fresh clone the body-pose prior (data/cache/body_pose_gmm_*.pt) is not fitted yet, and both workers of an
# xdist run would fit it at once in their first body test. A process of its own, started by the first worker
# (which imports mhe anyway; the controller does not), fits it meanwhile; a worker that needs it before it is
# written fits it itself (the same function; the file is replaced atomically), as it would without this.
_prior_fit: subprocess.Popen | None = None


def _fit_the_pose_prior() -> None:
    global _prior_fit
    from mhe.body import pose_prior
    from mhe.utils import data_dir

    name = f"body_pose_gmm_k{pose_prior.POSE_GMM_COMPONENTS}_s{pose_prior.POSE_GMM_SEED}_v{pose_prior.POSE_GMM_VERSION}"
    if not (data_dir() / "cache" / f"{name}.pt").is_file():
        _prior_fit = subprocess.Popen(
            [sys.executable, "-c", "from mhe.body.pose_prior import benchmark_pose_gmm; benchmark_pose_gmm()"],
            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_runtest_logreport(report):
    if _durations is not None:
        _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    if _prior_fit is not None and _prior_fit.poll() is None:  # a short run: not needed any more
        _prior_fit.kill()
        _prior_fit.wait()
    if _durations is None:
        return
    out = Path(os.environ["MHE_RECORD_DURATIONS"])
    try:
        merged = json.loads(out.read_text())
    except (OSError, ValueError):
        merged = {}
    merged.update({k: round(v, 2) for k, v in _durations.items()})
    out.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if hasattr(config, "workerinput") or not RUNS.is_dir():
        return
    for run in RUNS.iterdir():  # the records of runs that ended more than an hour ago (this one's included)
        if run.name == run_id(config) or time.time() - run.stat().st_mtime > 3600:
            shutil.rmtree(run, ignore_errors=True)
