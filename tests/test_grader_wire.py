"""The pieces of the grader that read untrusted input, and the checks under the grader's own seeds.

No kernel here: the answers and notebooks are built by hand, as a tampering kernel or a
broken file would make them, or come from the grader's helper run in this process
(:class:`FakeKernel`), changed on their way back as a tampering kernel would change them.
"""
import ast
import base64
import io
import json
import os
import threading
import time
import tracemalloc
from types import SimpleNamespace
from pathlib import Path

import nbformat
import numpy as np
import pytest

import sa_numpy as ref
from sa_course import checks, grade
from sa_course.checks.harness import CheckFailure, Grading, LearnerError, grading
from sa_course.grade import clock, kernel, notebook, wire, zmtp

ROOT = Path(__file__).resolve().parent.parent


def _npy(arr, allow_pickle=False) -> str:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return base64.b64encode(buf.getvalue()).decode()


def _lying_header(shape) -> str:
    """A .npy of no bytes whose header claims ``shape`` (a zero in it, so no bytes are missing)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return base64.b64encode(buf.getvalue()).decode()


def test_an_array_comes_back_as_a_plain_writable_copy_with_its_dtype():
    class Sub(np.ndarray):
        pass
    sent = np.arange(12, dtype=np.float32).reshape(3, 4).T.view(Sub)
    got = wire.read_npy(_npy(sent))
    assert type(got) is np.ndarray and got.dtype == np.float32 and got.flags.writeable
    assert np.array_equal(got, np.asarray(sent))


@pytest.mark.parametrize("payload, why", [
    (lambda: _npy(np.array([object()], dtype=object), allow_pickle=True), "dtype object"),
    (lambda: _npy(np.array(["a"])), "dtype <U1"),
    (lambda: _npy(np.zeros(2, dtype=[("a", "f8")])), "dtype"),
    (lambda: _npy(np.zeros(4))[:-8], "bytes do not match"),
    (lambda: base64.b64encode(b"\x93NUMPY\x01\x00garbage").decode(), "unreadable"),
    (lambda: base64.b64encode(b"PK\x03\x04 a zip").decode(), "unreadable"),
    (lambda: 42, "not .npy"),
    (lambda: _lying_header((0, 2**62, 2**62)), "header NumPy refuses"),
    (lambda: _lying_header((0, 2**63)), "header NumPy refuses"),
])
def test_anything_but_a_plain_npy_of_numbers_is_refused(payload, why):
    with pytest.raises(LearnerError, match=why):
        wire.read_npy(payload())


@pytest.fixture
def answers(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def test_an_answer_is_read_only_from_a_plain_file(answers):
    folder, fd = answers
    (folder / "secret").write_text(json.dumps({"token": "x"}))
    (folder / "link.json").symlink_to(folder / "secret")
    os.mkfifo(folder / "fifo.json")
    (folder / "big.json").write_bytes(b" " * (wire.MAX_ANSWER + 1))
    (folder / "list.json").write_text("[1, 2]")
    (folder / "deep.json").write_text("[" * 100_000)
    for name, why in [("link.json", "could not be opened"), ("fifo.json", "not a plain file"),
                      ("big.json", "not a plain file"), ("list.json", "not a JSON object"),
                      ("deep.json", "not JSON"), ("missing.json", "wrote no answer")]:
        with pytest.raises(LearnerError, match=why):
            wire.read_answer(fd, name)


def test_results_decode_into_plain_values_and_opaque_stand_ins():
    remote = wire.Remote(kernel=None, deadline=0)
    value = remote.decode({"k": 0, "t": [{"k": 1, "npy": _npy(np.ones(2)), "s": []}, {"v": 3},
                                        {"k": 2, "o": "MyCache"}, {"k": 3, "d": [[{"v": "a"}, {"v": None}]]}]})
    arr, three, cache, mapping = value
    assert type(value) is tuple and three == 3 and mapping == {"a": None}
    assert type(cache).__name__ == "MyCache" and isinstance(cache, wire.KernelObject)
    assert remote.encode(cache) == {"k": 2} and remote.encode(value) == {"k": 0}   # passed back by reference
    for broken in ({"k": -1, "o": "x"}, {"v": [1]}, {"k": 0, "t": "no"}, {"k": 0}, [], {"k": 0, "d": [[1]]}):
        with pytest.raises(LearnerError):
            remote.decode(broken)


@pytest.mark.parametrize("text, why", [
    (b"\xff\xfe", "not JSON"),
    (b"[]", "top level is a list"),
    (b'{"nbformat": 3, "cells": []}', "nbformat is 3"),
    (b'{"nbformat": 4, "metadata": [], "cells": []}', "'metadata' must be an object"),
    (b'{"nbformat": 4, "metadata": {"sa_course": {"exercise": 4}}, "cells": []}', "must be a string"),
    (b'{"nbformat": 4, "metadata": {}, "cells": [{"cell_type": "code", "metadata": {}, "source": 5}]}',
     "'source' must be a string"),
    (b'{"nbformat": 4, "metadata": {}, "cells": [{"cell_type": "code", "source": ""}]}', "'metadata' must be"),
    (b'{"nbformat": 4, "metadata": {}, "cells": [{"cell_type": "code", "metadata": {"tags": [1]}, "source": ""}]}',
     "'tags' must be a list of strings"),
    (b'{"nbformat": 4, "metadata": {}, "cells": ["cell"]}', "not an object"),
])
def test_a_malformed_notebook_is_a_message_for_the_learner(text, why):
    with pytest.raises(notebook.BadNotebook, match=why):
        notebook.parse(text, Path("04_shuffle.ipynb"))


def _notebook(cells) -> bytes:
    return json.dumps({"nbformat": 4, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": source} for source in cells]}).encode()


@pytest.mark.parametrize("text, why", [
    (lambda: b"[" + b"0," * notebook.MAX_ITEMS + b"0]", "brackets in its JSON, more than 500,000"),
    (lambda: _notebook([""] * (notebook.MAX_CELLS + 1)), "2,001 cells, more than 2,000"),
    (lambda: _notebook(["x = 1\n" * 50_000]), "cell 1: code of 300,000 characters"),
    (lambda: _notebook(["x = 1\n" * 40_000] * 5), "cell 5: code of 240,000 characters, 1,200,000 so far"),
])
def test_a_notebook_beyond_the_graders_bounds_is_refused_naming_the_bound(text, why):
    with pytest.raises(notebook.BadNotebook, match=why):
        notebook.parse(text(), Path("04_shuffle.ipynb"))


def test_only_code_that_could_be_the_stubs_is_parsed_by_the_grader():
    """A notebook with more code than an untouched exercise is left to the kernel, unparsed."""
    stubs = notebook.Notebook("04_shuffle", tuple(c.source for c in nbformat.read(
        ROOT / "exercises" / "04_shuffle.ipynb", as_version=4).cells if c.cell_type == "code"))
    assert notebook.untouched(stubs)
    assert not notebook.untouched(notebook.Notebook("04_shuffle", stubs.code + ("x = 1\n" * 10_000,)))


def test_each_file_is_graded_once_however_it_is_named(tmp_path):
    nb = tmp_path / "04_shuffle.ipynb"
    nb.write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.ipynb").symlink_to(nb)
    os.link(nb, tmp_path / "sub" / "hard.ipynb")
    found = grade.notebooks([nb, tmp_path / "sub" / ".." / nb.name, tmp_path, tmp_path / "sub"])
    assert found == [nb]


def test_messages_lose_control_characters_but_keep_lines():
    assert grade.clean("a\x1b[31mb\x07\x1b]0;title\x07c\r\nd\x00\u202ee\tf") == "abc\nde    f"


@pytest.mark.parametrize("seed", range(6))
def test_the_reference_passes_every_check_under_the_graders_seeds(seed):
    """Inputs drawn at grading time never fail a correct answer (no unlucky input)."""
    context = Grading(seed=seed * 7919 + 1, shares=np.shares_memory)
    with grading(context):
        checks.check_grouping(ref.group_split_forward, ref.group_split_backward, ref.group_merge_forward,
                              ref.group_merge_backward)
        checks.check_channel_gate(ref.channel_gate_forward, ref.channel_gate_backward)
        checks.check_groupnorm(ref.groupnorm_forward, ref.groupnorm_backward)
        checks.check_spatial_gate(ref.spatial_gate_forward, ref.spatial_gate_backward)
        checks.check_shuffle(ref.channel_shuffle_forward, ref.channel_shuffle_backward)
        checks.check_sa_layer(ref.sa_forward, ref.sa_backward)
    assert len(context.praise) == 6 and all(p.startswith("Correct: ") for p in context.praise)


def test_the_graders_inputs_are_not_the_check_cells():
    """The check cell's inputs are fixed (a learner can see them); the grader's come from its own seed."""
    seen = []
    spy = lambda x, groups=2: seen.append(x.copy()) or ref.channel_shuffle_forward(x, groups)
    checks.check_shuffle(spy, ref.channel_shuffle_backward)
    with grading(Grading(seed=12345, shares=np.shares_memory)):
        checks.check_shuffle(spy, ref.channel_shuffle_backward)
    local, graded = seen[:len(seen) // 2], seen[len(seen) // 2:]
    assert not any(np.array_equal(a, b) for a in local for b in graded)


# ---------------------------------------------------------------- a call's answer, as a tampering kernel sends it

class FakeKernel:
    """The grader's helper (driver.py) run in this process on ``functions``: the kernel as the grader sees
    it. ``tamper(request, answer)`` may change each answer before the grader reads it."""

    def __init__(self, folder, functions: dict, tamper=None):
        env = {"__name__": "sa_grader_driver"}
        exec(compile(wire.DRIVER.read_text(), "<sa-grader-driver>", "exec"), env)
        self.helper, self.namespace, self.tamper = env["_make_grader_call"](), dict(functions), tamper
        self.scratch = SimpleNamespace(work=folder, work_fd=os.open(folder, os.O_RDONLY | os.O_DIRECTORY))

    def execute(self, code, deadline, silent=False):
        prefix = "__sa_grader__(globals(), "
        assert code.startswith(prefix) and code.endswith(")")
        request = ast.literal_eval(code[len(prefix):-1])
        self.helper(self.namespace, request)
        if self.tamper:
            req = json.loads(request)
            path = self.scratch.work / f".sa-grader-{req['n']}.json"
            answer = json.loads(path.read_text())
            self.tamper(req, answer)
            path.write_text(json.dumps(answer))
        return kernel.Reply("ok")


def test_an_earlier_calls_array_sent_back_changed_is_a_failure_and_never_taken(tmp_path):
    """A kernel that reports, for an array of an earlier call, a copy of another input would otherwise
    overwrite what the checks still compute their references from."""
    def replay(req, answer):
        if req["n"] == 2:
            answer["echo"]["0"] = answer["echo"]["1"]        # the first call's x := the second call's
    remote = wire.Remote(FakeKernel(tmp_path, {"total": lambda x: float(x.sum())}, replay), deadline=0)
    first, second = np.arange(6.0).reshape(2, 3), -np.ones((2, 3))
    assert remote.call("total", (first,), {}) == 15.0
    with pytest.raises(CheckFailure, match="changed an array that an earlier call was given"):
        remote.call("total", (second,), {})
    assert np.array_equal(first, np.arange(6.0).reshape(2, 3))


def test_a_write_into_this_calls_input_is_seen_and_into_an_earlier_ones_is_a_failure(tmp_path):
    kept = {}
    functions = {"keep": lambda x: kept.setdefault("x", x) is None,
                 "zero_this": lambda x: x.fill(0),
                 "zero_kept": lambda: kept["x"].fill(0)}
    remote = wire.Remote(FakeKernel(tmp_path, functions), deadline=0)
    a, b = np.ones(3), np.ones(4)
    remote.call("keep", (a,), {})
    remote.call("zero_this", (b,), {})
    assert np.array_equal(b, np.zeros(4))                # the checks see it, and say "changed its input"
    with pytest.raises(CheckFailure, match="earlier call"):
        remote.call("zero_kept", (), {})
    assert np.array_equal(a, np.ones(3))


def test_a_stand_in_type_per_name_at_most_max_types_per_notebook(tmp_path):
    """10,000 type names cost at most MAX_TYPES classes, and the next notebook starts without them."""
    many = lambda: [type(f"T{i}", (), {})() for i in range(10_000)]
    remote = wire.Remote(FakeKernel(tmp_path, {"many": many}), deadline=0)
    kinds = {type(v) for v in remote.call("many", (), {})}
    assert len(kinds) <= wire.MAX_TYPES and all(issubclass(k, wire.KernelObject) for k in kinds)
    assert wire.Remote(FakeKernel(tmp_path, {}), deadline=0).types.types == {}


def test_an_answer_of_too_many_objects_is_refused_before_it_is_parsed(answers):
    """12 MB of ``{},`` would be four million dicts; the grader counts, refuses, and never builds them."""
    folder, fd = answers
    (folder / "objects.json").write_bytes(b"[" + b"{}," * 4_000_000 + b"{}]")
    tracemalloc.start()
    try:
        with pytest.raises(LearnerError, match=f"more than {wire.MAX_CONTAINERS} JSON objects"):
            wire.read_answer(fd, "objects.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak


def test_a_kernels_answers_are_bounded_in_all(answers):
    folder, fd = answers
    (folder / "answer.json").write_text(json.dumps({"token": "t", "pad": "x" * 1000}))
    assert wire.read_answer(fd, "answer.json")[1] > 1000
    with pytest.raises(LearnerError, match="add up to more than"):
        wire.read_answer(fd, "answer.json", left=1000)


def test_checks_that_cannot_send_a_value_are_the_graders_error(tmp_path):
    remote = wire.Remote(FakeKernel(tmp_path, {"f": lambda v: v}), deadline=0)
    with pytest.raises(wire.GraderError, match="could not send"):
        remote.call("f", (object(),), {})


# ---------------------------------------------------------------- the shell socket, frame by frame

@pytest.fixture
def router(tmp_path):
    """A libzmq ROUTER, as a kernel's shell socket is, and the grader's ZMTP dealer connected to it."""
    import zmq
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(f"ipc://{tmp_path}/shell")
    dealer = zmtp.Dealer(f"{tmp_path}/shell")
    dealer.connect(time.monotonic() + 10, lambda: True)
    yield sock, dealer
    dealer.close()
    sock.close()
    context.term()


def _exchange(router, reply: list[bytes]):
    sock, dealer = router
    dealer.send([b"<IDS|MSG>", b"request"], time.monotonic() + 10)
    ident, *frames = sock.recv_multipart()
    assert frames == [b"<IDS|MSG>", b"request"]
    sock.send_multipart([ident, *reply])
    return dealer.recv(time.monotonic() + 10)


def test_the_grader_speaks_zeromqs_wire_protocol_with_a_kernels_socket(router):
    assert _exchange(router, [b"short", b"x" * 300, b""]) == [b"short", b"x" * 300, b""]


@pytest.mark.parametrize("reply, why", [
    ([b"x"] * (zmtp.MAX_FRAMES + 1), "more than 64 frames"),
    ([b"x" * (10 << 20)] * 2, "more than the 6291456 the grader reads"),
    ([b"x" * (zmtp.MAX_FRAME + 1)], "a frame of 16777217 bytes"),
])
def test_a_message_beyond_the_bounds_is_refused_before_it_is_read(router, reply, why):
    with pytest.raises(zmtp.Refused, match=why):
        _exchange(router, reply)


def test_a_notebooks_clock_does_not_run_while_the_grader_reads_another():
    """Time the grader spends in busy() on one notebook's data moves the other threads' deadlines by as
    much, and not its own."""
    def other():
        with clock.busy():
            time.sleep(0.5)
    start_wall, start = time.monotonic(), clock.now()
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert (time.monotonic() - start_wall) - (clock.now() - start) >= 0.45
    start_wall, start = time.monotonic(), clock.now()
    other()
    assert abs((time.monotonic() - start_wall) - (clock.now() - start)) < 0.05
