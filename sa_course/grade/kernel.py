"""One learner kernel: start it (retrying a failed start), run cells with a deadline, stop it.

The kernel is ``sys.executable -m ipykernel_launcher -f <connection file>``, started by
:mod:`~sa_course.grade.sandbox` (never through a Jupyter kernelspec). Its sockets are unix
sockets in its scratch directory (``transport: ipc``): with TCP, ports are picked before the
kernel binds them, and kernels starting side by side can pick the same one, after which
one dies with "Kernel died before replying to kernel_info" (jupyter_client issue #154).
The grader talks to the shell socket only, through :mod:`~sa_course.grade.zmtp` (ZeroMQ's
wire protocol, every message bounded before it is read), with jupyter_client's Session set
to JSON (it never unpickles); it does not subscribe to the kernel's output, so a cell that
prints a flood costs the grader nothing. Every wait has a deadline (on :mod:`~sa_course.grade.clock`) and
checks that the process is still alive.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass

from jupyter_client.session import Session

from ..checks.harness import LearnerError
from . import clock, sandbox, zmtp

START_TIMEOUT = 60.0          # seconds for one start, on a loaded 2-core machine a start takes 2-10 s
START_ATTEMPTS = 2


class KernelStartError(RuntimeError):
    """The kernel did not start: the grader's problem, never the learner's."""


class KernelGone(BaseException):
    """The kernel died (BaseException: passes through the checks' own ``except Exception``)."""


class KernelTimeout(BaseException):
    """The deadline passed while the kernel was working."""


@dataclass
class Reply:
    """What an execute_request came back with."""
    status: str                   # "ok" or "error"
    ename: str = ""
    evalue: str = ""
    traceback: tuple = ()


def program(connection_file: str) -> list[str]:
    """The kernel's command line (tests replace it to make a start fail)."""
    return [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file,
            "--HistoryManager.enabled=False", "--IPKernelApp.log_level=CRITICAL"]


class KernelSession:
    """A kernel in a scratch directory; ``with KernelSession(...) as k: k.execute(code, deadline)``."""

    def __init__(self, iso: sandbox.Isolation, limits: sandbox.Limits, strict: dict | None = None,
                 env_extra: dict | None = None):
        self.iso, self.limits, self.strict, self.env_extra = iso, limits, strict, env_extra
        self.lease = sandbox.UidLease() if iso.root and iso.level != "none" else None
        self.uid = self.lease.uid if self.lease else None
        try:
            self.scratch = sandbox.Scratch(self.uid, limits.scratch_bytes)
        except BaseException:
            if self.lease:
                self.lease.release()
            raise
        self.kernel: sandbox.Kernel | None = None
        self.socket = None
        self.attempts = 0

    # ------------------------------------------------------------------ start and stop
    def start(self) -> None:
        """Start the kernel and wait for its kernel_info reply; retry once, then KernelStartError."""
        errors = []
        for attempt in range(1, START_ATTEMPTS + 1):
            self.attempts = attempt
            try:
                self._start_once(attempt)
                return
            except (KernelGone, KernelTimeout, OSError) as exc:
                why = "did not answer within %g s" % START_TIMEOUT if isinstance(exc, KernelTimeout) else \
                    "exited before it answered" if isinstance(exc, KernelGone) else f"{type(exc).__name__}: {exc}"
                log = sandbox.read_log(self.kernel, 600).strip().splitlines()[-2:] if self.kernel else []
                errors.append(why + (" (" + " / ".join(log) + ")" if log else ""))
                self._stop_process()
        raise KernelStartError(f"the kernel did not start ({START_ATTEMPTS} attempts): " + "; ".join(errors))

    def _start_once(self, attempt: int) -> None:
        self.key = secrets.token_hex(32)
        prefix = f"{self.scratch.work}/.k{attempt}"
        info = {"transport": "ipc", "ip": prefix, "shell_port": 1, "iopub_port": 2, "stdin_port": 3,
                "control_port": 4, "hb_port": 5, "key": self.key, "signature_scheme": "hmac-sha256",
                "kernel_name": ""}
        conn = self.scratch.work / f".kernel-{attempt}.json"
        fd = os.open(conn, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        if self.uid is not None:
            os.chown(conn, self.uid, self.uid)
        self.session = Session(key=self.key.encode(), signature_scheme="hmac-sha256", packer="json",
                               username="sa-grader")
        self.kernel = sandbox.start(self.iso, self.scratch, program(str(conn)), self.limits, self.uid,
                                    self.strict, self.env_extra)
        deadline = clock.now() + START_TIMEOUT
        self.socket = zmtp.Dealer(f"{prefix}-1")
        try:
            self.socket.connect(deadline, self.alive)
        except zmtp.Expired:
            raise KernelTimeout() from None
        except zmtp.Closed:
            raise KernelGone() from None
        self._reply(self._send("kernel_info_request", {}, deadline), deadline)

    def _stop_process(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.kernel is not None:
            sandbox.stop(self.kernel)

    def close(self) -> None:
        """Kill the kernel and every process it started, remove the scratch directory, free the uid."""
        try:
            self._stop_process()
        finally:
            try:
                self.scratch.remove()
            finally:
                if self.lease:
                    self.lease.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ running code
    def alive(self) -> bool:
        return self.kernel is not None and self.kernel.proc.poll() is None

    def _send(self, msg_type: str, content: dict, deadline: float) -> str:
        """Send a request on the shell socket; its msg_id."""
        msg = self.session.msg(msg_type, content)
        try:
            self.socket.send(self.session.serialize(msg), deadline)
        except zmtp.Expired:
            raise KernelTimeout() from None
        except (zmtp.Closed, BrokenPipeError, ConnectionResetError):
            raise KernelGone() from None
        return msg["header"]["msg_id"]

    def _reply(self, msg_id: str, deadline: float) -> dict:
        """Wait for the shell reply to msg_id, until the deadline or the kernel's death. At the deadline
        the grader takes one more look: a reply that came while it was busy elsewhere still counts.
        A message over zmtp's bounds raises zmtp.Refused."""
        last_look = False
        while True:
            left = deadline - clock.now()
            if left <= 0:
                if last_look:
                    raise KernelTimeout()
                last_look = True
            if self.socket.readable(min(left, 0.25)):
                try:
                    parts = self.socket.recv(max(deadline, clock.now() + 0.1))
                except zmtp.Expired:
                    raise KernelTimeout() from None
                except (zmtp.Closed, ConnectionResetError):
                    raise KernelGone() from None
                try:
                    _idents, parts = self.session.feed_identities(parts)
                    msg = self.session.deserialize(parts)
                except Exception:        # a forged or garbled message: not the reply we wait for
                    continue
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return msg
            elif not self.alive():
                raise KernelGone()

    def execute(self, code: str, deadline: float, silent: bool = False) -> Reply:
        """Run code in the kernel; KernelTimeout at the deadline, KernelGone if it dies, LearnerError if
        it sends the grader a message beyond zmtp's bounds."""
        msg_id = self._send("execute_request", {
            "code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}, deadline)
        try:
            content = self._reply(msg_id, deadline).get("content", {})
        except zmtp.Refused as exc:
            raise LearnerError(f"your kernel broke its connection to the grader ({exc}): something in the "
                               f"notebook changed how the kernel works") from None
        if not isinstance(content, dict) or content.get("status") != "error":
            return Reply("ok")
        text = lambda v, n: str(v)[:n] if v is not None else ""
        tb = content.get("traceback") if isinstance(content.get("traceback"), list) else []
        return Reply("error", text(content.get("ename"), 200), text(content.get("evalue"), 4000),
                     tuple(text(line, 4000) for line in tb[-20:]))
