"""The pieces of the grader that read untrusted input, and the checks under the grader's own seeds.

No kernel here: the answers and notebooks are built by hand, as a tampering kernel or a
broken file would make them.
"""
import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

import sa_numpy as ref
from sa_course import checks, grade
from sa_course.checks.harness import Grading, LearnerError, grading
from sa_course.grade import notebook, wire

ROOT = Path(__file__).resolve().parent.parent


def _npy(arr, allow_pickle=False) -> str:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
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
