"""The grader's side of a call into the learner's kernel: what it sends, and what it accepts back.

:class:`Remote` stands between the checks (which run in the grader) and the learner's
functions (which run in the kernel). Calling a :class:`RemoteFunction` sends its
arguments (arrays as ``.npy`` bytes; arguments the kernel returned earlier, such as a
forward's cache, by reference, so the learner's own object goes to the backward) and
reads the answer from a file in the kernel's directory. The answer is untrusted input:
it is read without following links, only if it is a regular file of bounded size with a
bounded number of JSON objects and lists, parsed as JSON, must carry this call's random
token, and each array must be a ``.npy`` of numbers whose header matches its bytes; it
becomes a plain ``ndarray`` copy. Nothing is ever unpickled. Of the grader's own arrays the
kernel reports back, only those this call sent are taken (a write into an input shows in
the checks); one sent by an earlier call that comes back changed is a failure, and never
changes the grader's copy. Anything the kernel sends that the grader does not accept is the
learner's error (:class:`~sa_course.checks.LearnerError`); a failure of the grader's own
end is a :class:`GraderError`, reported as the grader's.
"""
from __future__ import annotations

import base64
import errno
import io
import json
import math
import os
import re
import secrets
import stat
from pathlib import Path

import numpy as np

from ..checks.harness import CheckFailure, LearnerError
from . import clock
from .kernel import KernelSession

DRIVER = Path(__file__).with_name("driver.py")
MAX_ANSWER = 16 << 20         # bytes of one answer file
MAX_CONTAINERS = 100_000      # JSON objects and lists in one answer (counted before it is parsed)
MAX_RECEIVED = 256 << 20      # bytes of answers from one kernel, in all
MAX_TYPES = 64                # type names the stand-ins of one notebook carry; more are all "object"
MAX_DEPTH = 24
_NAME = re.compile(r"[^A-Za-z0-9_. \[\]-]")
_GRADERS_OWN = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EIO, errno.ENOSPC}


class GraderError(BaseException):
    """The grader's own end of a call failed (BaseException: the checks' ``except Exception`` must
    not blame the learner for it)."""


class KernelObject:
    """Stands for an object the learner's function returned that is not an array or a container;
    subclasses carry the learner's type name, so messages say "got MyCache"."""


class KernelTypes:
    """The stand-in classes of one notebook, one per type name, at most MAX_TYPES of them."""

    def __init__(self):
        self.types: dict[str, type] = {}

    def of(self, name: str) -> KernelObject:
        name = _NAME.sub("", name)[:60] or "object"
        if name not in self.types and len(self.types) >= MAX_TYPES - 1:
            name = "object"
        if name not in self.types:
            self.types[name] = type(name, (KernelObject,), {})
        return self.types[name]()


def bad(why: str) -> LearnerError:
    return LearnerError(f"your kernel's answer to the grader was not usable ({why}): something in the "
                        f"notebook changed how the kernel works")


def read_npy(text) -> np.ndarray:
    """A .npy (base64) of numbers, checked against its own header, as a plain writable array."""
    if not isinstance(text, str):
        raise bad("an array that is not .npy data")
    try:
        data = base64.b64decode(text, validate=True)
        f = io.BytesIO(data)
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, fortran, dtype = read(f)
    except Exception as exc:
        raise bad(f"unreadable array data: {type(exc).__name__}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufc" or \
            not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 32:
        raise bad(f"an array of dtype {dtype} and shape {shape}")
    count = math.prod(shape)
    if len(data) - f.tell() != count * dtype.itemsize:
        raise bad("an array whose bytes do not match its header")
    try:
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
        return np.array(flat.reshape(shape, order="F" if fortran else "C"), order="C", copy=True)
    except (ValueError, TypeError, MemoryError) as exc:
        raise bad(f"an array whose header NumPy refuses (shape {shape}): {exc}") from None


def read_answer(dir_fd: int, name: str, left: int = MAX_ANSWER) -> tuple[dict, int]:
    """The kernel's answer file and its size, refused unless it is a plain file of JSON, of at most
    MAX_ANSWER bytes and ``left`` (what is left of the kernel's MAX_RECEIVED), and MAX_CONTAINERS."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise bad("it wrote no answer") from None
    except OSError as exc:
        if exc.errno in _GRADERS_OWN:
            raise GraderError(f"the grader could not open the kernel's answer: {exc.strerror}") from None
        raise bad(f"its answer could not be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ANSWER:
            raise bad(f"its answer is not a plain file of at most {MAX_ANSWER >> 20} MiB")
        if info.st_size > left:
            raise bad(f"its answers add up to more than {MAX_RECEIVED >> 20} MiB")
        chunks, size = [], 0
        while size <= info.st_size:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if data.count(b"{") + data.count(b"[") > MAX_CONTAINERS:
        raise bad(f"its answer holds more than {MAX_CONTAINERS} JSON objects and lists")
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError):
        raise bad("its answer is not JSON") from None
    if not isinstance(answer, dict):
        raise bad("its answer is not a JSON object")
    return answer, len(data)


class Remote:
    """The grader's end of the calls into one kernel, for one exercise's checks."""

    def __init__(self, kernel: KernelSession, deadline: float):
        self.kernel, self.deadline = kernel, deadline
        self.n = 0
        self.types = KernelTypes()
        self.received = 0                            # bytes of answers so far
        self.current: set[int] = set()               # ids of the grader's arrays in the call being made
        self.sent: dict[int, np.ndarray] = {}        # grader arrays the kernel holds, by id
        self.sent_ids: dict[int, int] = {}           # id(array) -> its id
        self.back: dict[int, int] = {}               # id(decoded object) -> the kernel's index
        self.kept: list = []                         # keeps decoded objects alive, so ids stay unique
        self.views: dict[int, frozenset] = {}        # id(decoded array) -> ids of inputs it shares memory with

    def install(self) -> None:
        """Send the helper's source to the kernel (after the learner's cells)."""
        code = ("__sa_grader_env__ = {'__name__': 'sa_grader_driver'}\n"
                f"exec(compile({DRIVER.read_text()!r}, '<sa-grader-driver>', 'exec'), __sa_grader_env__)\n"
                "__sa_grader__ = __sa_grader_env__['_make_grader_call']()\n"
                "del __sa_grader_env__\n")
        reply = self.kernel.execute(code, self.deadline, silent=True)
        if reply.status != "ok":
            raise bad(f"the grader's helper did not load: {reply.ename}: {reply.evalue[:200]}")

    # ------------------------------------------------------------------ encoding what is sent
    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ValueError("the checks sent a value nested too deeply")
        if id(value) in self.back:
            return {"k": self.back[id(value)]}
        if isinstance(value, np.ndarray):
            if id(value) in self.sent_ids and self.sent[self.sent_ids[id(value)]] is value:
                self.current.add(self.sent_ids[id(value)])
                return {"a": self.sent_ids[id(value)]}
            aid = len(self.sent)
            self.current.add(aid)
            self.sent[aid], self.sent_ids[id(value)] = value, aid
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            return {"a": aid, "npy": base64.b64encode(buf.getvalue()).decode("ascii")}
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"v": value.item() if isinstance(value, np.generic) else value}
        if isinstance(value, (tuple, list)):
            return {"t" if isinstance(value, tuple) else "l": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"d": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        raise TypeError(f"the checks cannot send a {type(value).__name__}")

    # ------------------------------------------------------------------ decoding what comes back
    def decode(self, node, depth: int = 0):
        if not isinstance(node, dict) or depth > MAX_DEPTH:
            raise bad("a malformed result")
        if set(node) == {"v"}:
            v = node["v"]
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise bad("a malformed value")
            return v
        kid = node.get("k")
        if not isinstance(kid, int) or isinstance(kid, bool) or kid < 0:
            raise bad("a result without its reference")
        if "npy" in node:
            value = read_npy(node["npy"])
            shares = node.get("s", [])
            if not isinstance(shares, list) or not all(isinstance(s, int) for s in shares):
                raise bad("a malformed memory report")
            self.views[id(value)] = frozenset(shares)
        elif "t" in node or "l" in node:
            items = node.get("t", node.get("l"))
            if not isinstance(items, list):
                raise bad("a malformed sequence")
            value = [self.decode(v, depth + 1) for v in items]
            value = tuple(value) if "t" in node else value
        elif "d" in node:
            pairs = node["d"]
            if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise bad("a malformed dict")
            value = {}
            for key, v in pairs:
                key = self.decode(key, depth + 1)
                value[key if isinstance(key, (str, int, float, bool, type(None))) else id(key)] = \
                    self.decode(v, depth + 1)
        elif isinstance(node.get("o"), str):
            value = self.types.of(node["o"])
        else:
            raise bad("a result of unknown kind")
        self.kept.append(value)
        self.back[id(value)] = kid
        return value

    def shares(self, out, arr) -> bool:
        """Whether the kernel said ``out`` (a result) shares memory with ``arr`` (sent to it)."""
        aid = self.sent_ids.get(id(arr))
        return aid is not None and self.sent.get(aid) is arr and aid in self.views.get(id(out), ())

    # ------------------------------------------------------------------ one round trip
    def request(self, body: dict) -> dict:
        self.n += 1
        token = secrets.token_hex(16)
        body = {"token": token, "n": self.n, "dir": str(self.kernel.scratch.work), **body}
        reply = self.kernel.execute(f"__sa_grader__(globals(), {json.dumps(body)!r})", self.deadline, silent=True)
        if reply.status != "ok":
            raise bad(f"the grader's call failed in the kernel: {reply.ename}: {reply.evalue[:200]}")
        with clock.busy():
            answer, size = read_answer(self.kernel.scratch.work_fd, f".sa-grader-{self.n}.json",
                                       MAX_RECEIVED - self.received)
        self.received += size
        if answer.get("token") != token or answer.get("n") != self.n:
            raise bad("its answer is not the answer to this call")
        return answer

    def probe(self, names) -> dict:
        """For each name: (defined, callable, type name) in the notebook's namespace."""
        found = self.request({"op": "probe", "names": list(names)}).get("names")
        if not isinstance(found, dict) or set(found) != set(names) or \
                not all(isinstance(v, list) and len(v) == 3 and isinstance(v[2], str) for v in found.values()):
            raise bad("a malformed list of names")
        return {n: (bool(v[0]), bool(v[1]), v[2]) for n, v in found.items()}

    def call(self, name: str, args: tuple, kwargs: dict):
        self.current = set()
        try:
            body = {"op": "call", "name": name, "args": [self.encode(a) for a in args],
                    "kwargs": {k: self.encode(v) for k, v in kwargs.items()}}
        except (TypeError, ValueError) as exc:
            raise GraderError(f"the checks could not send the arguments of {name}: {exc}") from None
        answer = self.request(body)
        with clock.busy():
            self.take_inputs(name, answer.get("echo"))
        if "raised" in answer:
            raised = answer["raised"]
            if not isinstance(raised, dict):
                raise bad("a malformed error report")
            kind, message = str(raised.get("type", "Exception"))[:100], str(raised.get("message", ""))[:4000]
            if raised.get("not_implemented") is True:
                raise NotImplementedError(message)
            raise LearnerError(f"{name} raised {kind}: {message}{str(raised.get('where', ''))[:2000]}")
        if "result" not in answer:
            raise bad("no result")
        with clock.busy():
            return self.decode(answer["result"])

    def take_inputs(self, name: str, echo) -> None:
        """The kernel's report of every array the grader sent it: this call's are copied into the grader's
        arrays (so the checks see a write into an input); an earlier call's must be unchanged, and are
        never copied (the checks may still compute with them)."""
        if not isinstance(echo, dict) or set(echo) != {str(a) for a in self.sent}:
            raise bad("it did not report its inputs")
        for aid, original in self.sent.items():
            now = read_npy(echo[str(aid)])
            if now.shape != original.shape or now.dtype != original.dtype:
                raise CheckFailure(f"{name} changed the shape or dtype of one of its input arrays in place "
                                   f"(to {now.shape}, {now.dtype})\n  hint: never modify an input; compute "
                                   f"into a new array instead")
            if aid in self.current:
                if original.flags.writeable:
                    np.copyto(original, now)
            elif now.tobytes() != original.tobytes():
                raise CheckFailure(f"{name} changed an array that an earlier call was given (it kept it, or a "
                                   f"view of it, in a cache or a global and wrote into it)\n  hint: never modify "
                                   f"an input; compute into a new array instead")


class RemoteFunction:
    """A learner's function, called in the learner's kernel."""

    def __init__(self, remote: Remote, name: str):
        self.remote, self.name = remote, name

    def __call__(self, *args, **kwargs):
        return self.remote.call(self.name, args, kwargs)
