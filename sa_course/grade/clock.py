"""The clock a notebook's time limit runs on: wall time, less the time the grader spent reading other
notebooks' data meanwhile.

Notebooks are graded side by side in threads of one grader process (``--jobs``), and reading a
notebook or a kernel's answer holds Python's interpreter lock: while the grader reads one, the
others cannot take their kernels' replies. Each such read runs in :func:`busy`, and
:func:`now` in a thread is ``time.monotonic()`` less the busy time of every other thread, so a
deadline set on it moves by what the others cost. A notebook's own reads count against its own
time, as its kernel's work does.
"""
from __future__ import annotations

import contextlib
import threading
import time

_LOCK = threading.Lock()
_TOTAL = [0.0]                   # busy seconds of all threads
_MINE = threading.local()        # .busy: busy seconds of this thread


def now() -> float:
    """Seconds, for deadlines: like ``time.monotonic()``, without the other threads' busy time."""
    with _LOCK:
        others = _TOTAL[0] - getattr(_MINE, "busy", 0.0)
    return time.monotonic() - others


@contextlib.contextmanager
def busy():
    """Count the time of this block as the grader's reading of learner data."""
    start = time.monotonic()
    try:
        yield
    finally:
        spent = time.monotonic() - start
        with _LOCK:
            _TOTAL[0] += spent
        _MINE.busy = getattr(_MINE, "busy", 0.0) + spent
