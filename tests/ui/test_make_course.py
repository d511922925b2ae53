"""The README's first command, `make course`, really starts JupyterLab on the course,
serving lessons, exercises and solutions, and opening lesson 00, without the "get notified
about Jupyter news" pop-up (the course's overrides.json, not the learner's own settings).

It runs the Makefile target itself (with the set-up already done, as after `make test`),
on loopback with a random port and token, in an isolated Jupyter home, and always stops it.
As root it must still start: JupyterLab refuses root unless told --allow-root.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_course_serves_lesson_00(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                "JUPYTERLAB_WORKSPACES_DIR", "JUPYTERLAB_SETTINGS_DIR"):
        env[var] = str(tmp_path / var.lower())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={token} --ServerApp.terminals_enabled=False")
    log = tmp_path / "make-course.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["make", "--no-print-directory", "course", f"JUPYTER_ARGS={args}"],
                                   cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)

    def api(path):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"`make course` exited:\n{log.read_text()[-3000:]}"
            try:
                api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"no JupyterLab after 90 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        # the whole course is served, not just notebooks/
        for folder in ("notebooks", "exercises", "solutions"):
            assert api(f"/api/contents/{folder}?content=0")["type"] == "directory", folder
        assert api("/api/contents/notebooks/00_overview.ipynb?content=0")["type"] == "notebook"
        # and the browser lands on lesson 00
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"http://127.0.0.1:{port}/?token={token}", timeout=10)
        assert "/lab/tree/notebooks/00_overview.ipynb" in redirect.value.headers["Location"]
        # no news pop-up and no update check, with empty user settings: JupyterLab asks about
        # news whenever fetchNews is "none", its default; overrides.json replaces the defaults
        schema = api("/lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]["properties"]
        assert schema["fetchNews"]["default"] == "false", schema["fetchNews"]
        assert schema["checkForUpdates"]["default"] is False, schema["checkForUpdates"]
    finally:
        children = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        _, alive = psutil.wait_procs(children, timeout=20)
        for p in alive:
            p.kill()
    assert not alive, f"processes left running after `make course`: {alive}"
