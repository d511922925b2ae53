"""A real JupyterLab and a real (headless) Chromium for the browser tests.

The server runs from this Python environment on 127.0.0.1, on a free port, with a random
token, no browser of its own, and every Jupyter/IPython/matplotlib setting in a fresh
temporary home, so nothing leaks in from the machine or out to it. It serves a temporary
*copy* of notebooks/, exercises/ and solutions/, so the repository's files are never
touched by JupyterLab saving them. The kernels see the learner's environment:
``SA_COURSE_STATIC`` and ``MPLBACKEND`` (set by the project's conftest for nbval) are
removed, so widgets are real widgets and figures are inline images.

Everything started here is stopped here, on success and on failure alike, and the last
fixture to finish checks that no process it started is still running.
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVED_FOLDERS = ("notebooks", "exercises", "solutions")
#: JupyterLab user settings for the test: every cell in the page (no windowing, so the
#: DOM holds every output), and no news or update checks (loopback only).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}
#: Server configuration: no news feed, no update check, no extension index (loopback only),
#: no terminals; root (as in CI containers) is allowed.
LAB_CONFIG = {
    "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
               "extension_manager": "readonly"},
    "ServerApp": {"terminals_enabled": False, "allow_root": True},
}
STARTUP_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it is, how to get in, and the folder it serves."""
    url: str       # http://127.0.0.1:PORT
    token: str
    root: Path     # the temporary copy it serves
    log: Path      # the server's stdout and stderr

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def open_url(self, notebook: str, workspace: str) -> str:
        """URL that opens ``notebook`` (relative to root) in a fresh, named workspace."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "IPYTHON", "MPL")) and k != "SA_COURSE_STATIC"}
    dirs = {"HOME": "home", "JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces", "IPYTHONDIR": "ipython",
            "MPLCONFIGDIR": "matplotlib"}
    for var, name in dirs.items():
        (home / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / name)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    (home / "config" / "jupyter_lab_config.json").write_text(json.dumps(LAB_CONFIG))
    for name, settings in LAB_SETTINGS.items():
        path = home / "lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return env


def _stop_with_parent() -> None:
    """In the server's process, before exec (Linux): receive SIGTERM if the test process dies
    without cleaning up, e.g. when it is killed with SIGKILL."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_ready(lab: Lab, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {process.returncode}:\n"
                               f"{lab.log.read_text()[-3000:]}")
        try:
            lab.api("/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer within {STARTUP_TIMEOUT_S}s:\n"
                       f"{lab.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), then kill what is left."""
    import psutil

    children = _descendants(process.pid)   # kernels run in sessions of their own
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)
    _, alive = psutil.wait_procs(children, timeout=STOP_TIMEOUT_S)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


def _mentioning(folder: Path) -> list:
    """Running processes whose command line names ``folder`` (Chromium's crash handlers detach
    from their parent, but they carry the temporary home in their arguments)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(folder) in arg for arg in p.info["cmdline"] or ()):
            found.append(p)
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The folder for everything the browser tests start. On teardown, any process still
    running that was started by these tests (a child of this process, or one naming this
    folder) gets a few seconds to exit, is then killed by its id, and fails the teardown."""
    import psutil

    folder = tmp_path_factory.mktemp("ui")
    before = {p.pid for p in _descendants(os.getpid())}
    yield folder
    ours = {p.pid: p for p in _descendants(os.getpid()) + _mentioning(folder) if p.pid not in before}
    _, leftovers = psutil.wait_procs(list(ours.values()), timeout=STOP_TIMEOUT_S)
    for p in leftovers:
        p.kill()
    psutil.wait_procs(leftovers, timeout=STOP_TIMEOUT_S)
    assert not leftovers, f"processes left running after the browser tests: {leftovers}"


@pytest.fixture(scope="module")
def lab(workdir):
    """A JupyterLab serving a temporary copy of the course. Always stopped afterwards."""
    if not CHROMIUM.exists():
        reason = (f"{CHROMIUM} is missing: install Debian's chromium (`make browser`, "
                  f"or `apt-get install -y chromium`) to run the JupyterLab browser tests")
        if os.environ.get("CI"):
            pytest.fail(reason + " (in CI the browser test must run, not be skipped)")
        pytest.skip(reason)
    root = workdir / "course"
    for folder in SERVED_FOLDERS:
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home = workdir / "jupyter-home"
    env = _isolated_env(home)
    port, token = _free_port(), secrets.token_hex(24)
    log = home / "jupyter-lab.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_stop_with_parent)
    try:
        server = Lab(f"http://127.0.0.1:{port}", token, root, log)
        _wait_ready(server, process)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(lab, workdir):
    """Headless Debian Chromium driven by Playwright, with a temporary home (its profile
    and crash database go there); closed however the tests end."""
    from playwright.sync_api import sync_playwright

    home = workdir / "chromium-home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                              headless=True, env=env)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lab):
    """A fresh browser page; its kernels are shut down when the test ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
        lab.shutdown_kernels()


@pytest.fixture
def screenshot():
    """``screenshot(page, name, element=None)`` saves tests/ui/artifacts/NAME.png: the page,
    or just ``element`` (a locator, e.g. one cell, captured whole even where it scrolls)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str, element=None) -> None:
        (element or page).screenshot(path=str(ARTIFACTS / f"{name}.png"))
    return save
