"""Drive a real JupyterLab in headless Chromium: what a user does with a notebook, scripted.

:class:`LabSession` starts a Jupyter server on 127.0.0.1 (a random port and token, a private settings
folder, this Python's kernel), opens one notebook in Debian's ``chromium`` through Playwright (no browser
download: Playwright is pointed at the system browser), and records what a user would see go wrong: the
page's console errors and every error the kernel reports (tracebacks of widget callbacks, which
JupyterLab shows in its log console rather than under a cell). Used by ``tests/test_lab_explorer.py``
(the live explorer of notebook 06) and ``tools/explorer_screenshot.py`` (the README's screenshot).

Needs ``pip install playwright`` (in the project's test extras) and a Chromium on the PATH
(Debian: ``apt-get install chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Chromium switches for tests (``LabSession(browser_args=...)``), not for screenshots: WebGL draws in software
# (SwiftShader) in a headless browser, and plotly draws each 3D figure it renders in a new WebGL context; without
# multisampled antialiasing (4 samples a pixel, for smooth edges) those draws cost the GPU process about a third
# less CPU time. The scenes are drawn all the same, with jagged edges (the explorer test checks their pixels).
NO_WEBGL_ANTIALIASING = ("--webgl-antialiasing-mode=none",)


def find_browser() -> str | None:
    """The system Chromium's path, or None."""
    return next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)


def _error_reports(text: str) -> list[str]:
    """The error reports in one kernel message (each as its ``ename: evalue``; a traceback on stderr too)."""
    errors = [f"{m.group(1)}: {m.group(2)[:300]}"
              for m in re.finditer(r'"ename"\s*:\s*"([^"]*)"\s*,\s*"evalue"\s*:\s*"((?:[^"\\]|\\.)*)"', text)]
    if '"name": "stderr"' in text and "Traceback" in text:
        errors.append("a traceback on the kernel's stderr")
    return errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parameterised_copy(src: Path, dst: Path, parameters: dict[str, Any]) -> Path:
    """Copy notebook ``src`` to ``dst`` with ``NAME = value`` lines of its ``parameters`` cell replaced (as
    papermill would inject them, but in place, so the notebook reads as the user's own)."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    cell = next((c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{src} has no cell tagged 'parameters'")
    source = "".join(cell["source"])
    for name, value in parameters.items():
        source, n = re.subn(rf"^{name}\s*=.*?(?=\s*(#|$))", f"{name} = {value!r}", source, flags=re.M)
        if n != 1:
            raise ValueError(f"the parameters cell of {src} does not set {name} on one line")
    cell["source"] = source.splitlines(keepends=True)
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    return Path(dst)


class LabSession:
    """A JupyterLab server and a headless Chromium page on one notebook (a context manager).

    Args:
        notebook: the notebook to open (copied into ``workdir`` with ``parameters`` set).
        workdir: the server's root folder (also its settings and runtime folders).
        parameters: values for the notebook's ``parameters`` cell, e.g. ``{"SMOKE": True}``.
        viewport: the browser window's (width, height) in px.
        env: extra environment for the server and its kernels.
        browser_args: extra Chromium switches (e.g. :data:`NO_WEBGL_ANTIALIASING`).

    Attributes after entering: ``page`` (Playwright's), ``console_errors`` (the page's), ``kernel_messages``
    (every kernel websocket frame the page received, as text).
    """

    def __init__(self, notebook: Path, workdir: Path, parameters: dict[str, Any] | None = None,
                 viewport: tuple[int, int] = (1440, 900), env: dict[str, str] | None = None,
                 browser_args: Sequence[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.notebook = parameterised_copy(Path(notebook), self.workdir / Path(notebook).name, parameters or {})
        self.viewport = viewport
        self.env = dict(env or {})
        self.browser_args = ["--no-sandbox", *browser_args]
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.console_errors: list[str] = []
        self.kernel_messages: list[str] = []
        self._errors: list[str] = []  # the kernel's error reports, read from each message once, as it arrives
        self._reply_count = 0
        self._server: subprocess.Popen | None = None

    # -- lifetime -----------------------------------------------------------------------------------

    def __enter__(self) -> LabSession:
        browser = find_browser()
        if browser is None:
            raise RuntimeError("no Chromium on the PATH (Debian: apt-get install chromium)")
        from playwright.sync_api import sync_playwright

        settings = self.workdir / "lab-settings"
        # No "news" pop-up over the page (it would fetch from the network, which a test has none of).
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        # The notebook's own kernel (python3, this Python) without asking.
        tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True, exist_ok=True)
        tracker.write_text(json.dumps({"autoStartDefaultKernel": True}))
        env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.workdir / "lab-workspaces"),
                   JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"), **self.env)
        self._log = open(self.workdir / "server.log", "w")
        self._server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.workdir}",
             "--LabApp.news_url=", "--ServerApp.open_browser=False"],
            cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_for_server()
            self._pw = sync_playwright().start()
            self._browser = self._pw.chromium.launch(executable_path=browser, args=self.browser_args)
            self.page = self._browser.new_page(viewport={"width": self.viewport[0], "height": self.viewport[1]})
            self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
            self.page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
            self.page.on("websocket", self._watch)
            self.open()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for close in (lambda: self._browser.close(), lambda: self._pw.stop()):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing what may not have started
                pass
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(15)
            except subprocess.TimeoutExpired:
                self._server.kill()
        self._log.close()

    def _wait_for_server(self, timeout: float = 120) -> None:
        url = f"http://127.0.0.1:{self.port}/api/status?token={self.token}"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._server.poll() is not None:
                raise RuntimeError(f"the Jupyter server exited: see {self.workdir / 'server.log'}")
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the Jupyter server did not answer within {timeout} s")

    def _watch(self, ws: Any) -> None:
        def keep(payload: Any) -> None:
            text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
            self.kernel_messages.append(text)
            # read once here: the waits below poll these counts, and the messages hold megabytes of figures
            self._reply_count += len(re.findall(r'"msg_type"\s*:\s*"execute_reply"', text))
            self._errors += _error_reports(text)
        ws.on("framereceived", keep)

    # -- the notebook -------------------------------------------------------------------------------

    def open(self) -> None:
        """Open (or reopen, e.g. after a reload) the notebook and wait for an idle kernel."""
        self.page.goto(f"http://127.0.0.1:{self.port}/lab/tree/{self.notebook.name}?token={self.token}")
        self._ready()

    def kernel_status(self) -> str:
        """The kernel's state as JupyterLab's status bar says it ("Idle", "Busy", "Connecting", …; "" before
        the status bar shows one). The toolbar's execution indicator is no witness: it reads "idle" while the
        kernel is still connecting, and a Run All given then can be lost."""
        text = self.page.evaluate(
            "() => [...document.querySelectorAll('.jp-StatusBar-Widget span')].map(e => e.textContent)"
            "  .find(t => /\\|\\s*\\S/.test(t) && /ipykernel|Python/.test(t)) || ''")
        return text.rsplit("|", 1)[-1].strip() if "|" in text else ""

    def _wait_for_kernel(self, status: str = "Idle", timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while self.kernel_status() != status:
            dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
            if dialog.count() > 0:  # as a user would: keep the notebook's kernel
                dialog.get_by_role("button", name="Select").click()
            if time.monotonic() > end:
                raise self._timed_out(f"the kernel is {self.kernel_status()!r}, not {status!r}, after {timeout} s")
            self.page.wait_for_timeout(250)

    def _timed_out(self, what: str) -> TimeoutError:
        """A TimeoutError saying ``what``, with a screenshot of the page and the server log to look at."""
        shot = self.workdir / "timeout.png"
        self.page.screenshot(path=str(shot))
        return TimeoutError(f"{what} (screenshot: {shot}; server log: {self.workdir / 'server.log'})")

    def _ready(self) -> None:
        self.page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
        self._wait_for_kernel("Idle")

    def save(self) -> None:
        """File > Save Notebook (what autosave does every two minutes): the outputs, widget views among
        them, are written to the file, so that a reload shows them."""
        self.page.get_by_role("menuitem", name="File", exact=True).click()
        self.page.get_by_role("menuitem", name=re.compile(r"^Save Notebook")).first.click()
        self.page.wait_for_selector(".jp-NotebookPanel-tab.jp-mod-dirty, .lm-TabBar-tab.jp-mod-dirty",
                                    state="detached", timeout=30_000)

    def reload(self) -> None:
        """Reload the page (the kernel and its widgets live on) and wait until the notebook is back."""
        self.page.reload()
        self._ready()

    def _replies(self) -> int:
        """How many ``execute_reply`` messages the page has received from the kernel so far."""
        return self._reply_count

    def run_all(self, timeout: float = 600) -> float:
        """Run > Run All Cells, as a user would, once the kernel is idle, and wait until the kernel has
        answered every code cell and is idle again. Returns the seconds it took. Raises RuntimeError when a
        cell failed (with the kernel's error) and TimeoutError (with a screenshot) when it takes too long."""
        nb = json.loads(self.notebook.read_text(encoding="utf-8"))
        cells = sum(1 for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip())
        self._wait_for_kernel("Idle")
        before = self._replies()
        start = time.monotonic()
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        while self._replies() - before < cells:
            if self.kernel_errors():
                raise RuntimeError(f"a cell failed: {self.kernel_errors()[0]}")
            if time.monotonic() - start > timeout:
                raise self._timed_out(f"after {timeout} s the kernel has answered {self._replies() - before} of "
                                      f"{cells} code cells (kernel {self.kernel_status()!r})")
            self.page.wait_for_timeout(500)
        self._wait_for_kernel("Idle", timeout=max(60.0, timeout - (time.monotonic() - start)))
        self.page.wait_for_timeout(1000)  # the last outputs (widget views) render
        if self.kernel_errors():
            raise RuntimeError(f"a cell failed: {self.kernel_errors()[0]}")
        return time.monotonic() - start

    def scroll_to(self, selector: str, timeout: float = 60) -> Any:
        """Scroll the notebook until ``selector`` is rendered (JupyterLab renders cells as they come into
        view), bring it into view and return its locator."""
        end = time.monotonic() + timeout
        first = self.page.locator(selector).first
        self.page.evaluate(
            "() => { const s = document.querySelector('.jp-WindowedPanel-outer'); if (s) s.scrollTop = 0; }")
        while time.monotonic() < end:
            if self.page.locator(selector).count() > 0:
                first.scroll_into_view_if_needed()
                return first
            self.page.evaluate("() => document.querySelector('.jp-WindowedPanel-outer').scrollBy(0, 500)")
            self.page.wait_for_timeout(250)
        raise TimeoutError(f"{selector!r} did not appear in the notebook within {timeout} s")

    # -- what went wrong ----------------------------------------------------------------------------

    def kernel_errors(self) -> list[str]:
        """The kernel's error reports the page received (each as its ``ename: evalue``): tracebacks of cells
        and of widget callbacks alike, the latter being what JupyterLab's log console collects."""
        return list(self._errors)

    def log_console_count(self) -> int:
        """The number JupyterLab's status bar shows for the log console (0 when it shows none)."""
        text = self.page.evaluate(
            "() => { const e = document.querySelector('.jp-LogConsoleStatusItem, [class*=\"LogConsole\"]');"
            "  return e ? e.textContent : ''; }")
        digits = re.findall(r"\d+", text or "")
        return int(digits[0]) if digits else 0
