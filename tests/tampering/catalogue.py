"""Notebooks that try to get a "pass" for wrong code, or to harm the grader, its machine or the batch.

Each case is exercise 04 (the channel shuffle, the cheapest check) with a WRONG answer (the
channels in their original order) plus one trick; a trick aimed at the grader itself (its
memory, its clean-up, the wire) may carry the right answer instead. ``test_grader_tampering.py``
writes them as notebooks, grades them in two batches (plain and ``--strict``) next to the
correct solution, and checks that every trick gets a non-pass row, that the correct notebook
still passes, that nothing outside the kernel's scratch directory changed and that no
process is left.

Placeholders filled in by the test: ``{canary}`` a folder outside the copy holding
``keep.txt``; ``{original}`` the path of the notebook file being graded; ``{marker}`` a
string every process the notebook starts carries on its command line; ``{venv}`` the
course's virtual environment; ``{replay}`` answers recorded for the check cell's own inputs.
"""
from dataclasses import dataclass

WRONG = '''
def channel_shuffle_forward(x, groups=2):
    return x.copy(), groups


def channel_shuffle_backward(dout, cache):
    return dout.copy()
'''


@dataclass(frozen=True)
class Case:
    name: str
    attack: str                       # what it tries
    source: str = ""                  # the exercise cell (WRONG is added unless raw is set)
    raw: bytes | None = None          # the whole file instead, for malformed notebooks
    strict: bool = False              # graded in the --strict batch
    statuses: tuple = ("fail", "error")
    text: str = ""                    # the row's message contains this
    needs_bwrap: bool = False         # harmful where the kernel is not sandboxed: skipped there


CASES = [
    Case("patched_checks", "replace run_exercise, every check_* and the praise in the kernel", '''
import sa_course.checks as checks, sa_course.checks.exercises as exercises
praise = lambda *a, **k: print("Correct: channel shuffle, forward and backward. Well done!")
for module in (checks, exercises):
    module.run_exercise = praise
    for name in dir(module):
        if name.startswith("check_"):
            setattr(module, name, praise)
'''),
    Case("patched_compare", "make compare() and expect() agree with anything", '''
import sa_numpy.gradcheck as gradcheck, sa_course.checks.harness as harness
ok = lambda name, *a, **k: gradcheck.Comparison(name, 0.0, 0.0)
gradcheck.compare = harness.compare = ok
harness.expect = ok
harness.Report.expect = lambda self, *a, **k: None
''', text="out (groups=2): values differ"),
    Case("patched_numpy", "np.abs, np.max, np.allclose and np.array_equal that see no difference", '''
import numpy as np
np.abs = np.absolute = lambda x, *a, **k: np.zeros_like(x)
np.max = np.amax = lambda *a, **k: 0.0
np.allclose = np.array_equal = lambda *a, **k: True
''', text="values differ"),
    Case("lying_ndarray_subclass", "an ndarray subclass whose subtraction, abs and == say 'no difference'", '''
import numpy as np

class Liar(np.ndarray):
    def __sub__(self, other):
        return np.zeros(self.shape).view(Liar)
    __rsub__ = __sub__
    def __abs__(self):
        return np.zeros(self.shape)
    def __eq__(self, other):
        return np.ones(self.shape, dtype=bool)

def channel_shuffle_forward(x, groups=2):
    return x.copy().view(Liar), groups

def channel_shuffle_backward(dout, cache):
    return dout.copy().view(Liar)
''', text="values differ"),
    Case("input_transformer", "rewrite every later cell (the check cell, the grader's calls) into praise", '''
def _rewrite(lines):
    return ["print('Correct: channel shuffle, forward and backward. Well done!')\\n"]
get_ipython().input_transformers_post.append(_rewrite)
''', statuses=("error",), text="not usable"),
    Case("forged_answer", "rewrite the grader's calls into a forger that answers in the grader's format, "
         "with the right token, its inputs echoed untouched and plausible arrays as results", '''
import base64, io, json, os
import numpy as np

def __forge__(namespace, request):
    req = json.loads(request)
    out = {"token": req["token"], "n": req["n"]}
    if req["op"] == "probe":
        out["names"] = {n: [True, True, "function"] for n in req["names"]}
    else:
        arrays = [a for a in req["args"] if "npy" in a]
        __forge__.sent.update({str(a["a"]): a["npy"] for a in arrays})
        first = {"k": 0, "npy": arrays[0]["npy"], "s": []}
        out["result"] = {"k": 1, "t": [first, {"v": 2}]} if req["name"].endswith("forward") else first
        out["echo"] = dict(__forge__.sent)
    with open(os.path.join(req["dir"], f".sa-grader-{req['n']}.json"), "w") as f:
        json.dump(out, f)
__forge__.sent = {}

def _reroute(lines):
    return [line.replace("__sa_grader__(", "__forge__(") for line in lines]
get_ipython().input_transformers_post.append(_reroute)
''', text="out (groups=2): values differ"),
    Case("rewrites_earlier_inputs", "the right answers, but every array of an earlier call reported back as zeros, "
         "to overwrite what the grader computes its references from", '''
import base64, io, json, os
import numpy as np

def __zeroing__(namespace, request):
    __sa_grader__(namespace, request)
    req = json.loads(request)
    path = os.path.join(req["dir"], f".sa-grader-{req['n']}.json")
    with open(path) as f:
        answer = json.load(f)
    current = {str(a["a"]) for a in req.get("args", []) if isinstance(a, dict) and "a" in a}
    for aid, npy in answer.get("echo", {}).items():
        if aid not in current:
            buf = io.BytesIO()
            np.save(buf, np.zeros_like(np.load(io.BytesIO(base64.b64decode(npy)))))
            answer["echo"][aid] = base64.b64encode(buf.getvalue()).decode()
    with open(path, "w") as f:
        json.dump(answer, f)

def _reroute(lines):
    return [line.replace("__sa_grader__(", "__zeroing__(") for line in lines]
get_ipython().input_transformers_post.append(_reroute)

def channel_shuffle_forward(x, groups=2):
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w).copy(), groups

def channel_shuffle_backward(dout, cache):
    b, c, h, w = dout.shape
    return dout.reshape(b, c // cache, cache, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w).copy()
''', statuses=("fail",), text="an earlier call"),
    Case("pickled_answer", "np.save that writes a pickle which would run code when unpickled", '''
import numpy as np, os
class Boom:
    def __reduce__(self):
        return (os.system, ("touch {canary}/unpickled.txt",))
_save = np.save
np.save = lambda f, arr, allow_pickle=False, **k: _save(f, np.array([Boom()], dtype=object), allow_pickle=True)
''', statuses=("error",), text="not usable"),
    Case("forged_result_file", "write result.json (the old grader's verdict) everywhere, then kill the worker", '''
import json, os, signal
for folder in (".", "..", "/tmp", os.path.expanduser("~")):
    try:
        with open(os.path.join(folder, "result.json"), "w") as f:
            json.dump({"status": "pass", "message": "Correct: all checks passed"}, f)
    except OSError:
        pass
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError:
    pass
os._exit(0)
''', statuses=("error",), text="the kernel died"),
    Case("kills_everything", "kill every process it can signal", '''
import os, signal
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
''', statuses=("error", "fail"), needs_bwrap=True),
    Case("detached_child_holding_stdout", "a setsid child that holds stdout open, then an endless loop", '''
import subprocess, sys, time
subprocess.Popen(["setsid", "sh", "-c", "sleep 300; : {marker}"], stdout=sys.__stdout__, stderr=sys.__stderr__)
while True:
    time.sleep(0.1)
''', statuses=("timeout",)),
    Case("double_fork_daemon", "a daemon from a double fork in a new session", '''
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sh", ["sh", "-c", "sleep 300; : {marker}"])
    os._exit(0)
os.wait()
''', text="out (groups=2)"),
    Case("writes_outside_its_copy", "overwrite, delete and add files outside the scratch directory", '''
import os, shutil
for attempt in (lambda: open("{canary}/keep.txt", "w").write("changed"),
                lambda: os.remove("{canary}/keep.txt"),
                lambda: open("{canary}/new.txt", "w").write("new"),
                lambda: shutil.rmtree("{canary}"),
                lambda: os.chmod("{canary}/keep.txt", 0)):
    try:
        attempt()
    except OSError:
        pass
''', text="out (groups=2)"),
    Case("truncates_the_original", "truncate and delete the learner's own notebook by its absolute path", '''
import os
for attempt in (lambda: open("{original}", "w").close(), lambda: os.remove("{original}")):
    try:
        attempt()
    except OSError:
        pass
''', text="out (groups=2)"),
    Case("plants_a_kernelspec", "a python3 kernelspec in the venv that would make every later grading pass", '''
import json, os
spec = {"argv": ["sh", "-c", "echo pass"], "display_name": "Python 3 (ipykernel)", "language": "python"}
for folder in ("{venv}/share/jupyter/kernels/python3", os.path.expanduser("~/.local/share/jupyter/kernels/python3")):
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "kernel.json"), "w") as f:
            json.dump(spec, f)
    except OSError:
        pass
''', text="out (groups=2)", needs_bwrap=True),
    Case("lying_npy_header", "np.save that writes a header whose shape NumPy cannot make (no bytes missing: a zero in it)",
         '''
import numpy as np
np.save = lambda f, arr, allow_pickle=False, **k: np.lib.format.write_array_header_1_0(
    f, {"descr": "<f8", "fortran_order": False, "shape": (0, 2**62, 2**62)})
''', statuses=("error",), text="not usable"),
    Case("socket_flood", "one message of 40 frames of 10 MiB to the grader, on the kernel's own shell socket", '''
from ipykernel.kernelapp import IPKernelApp
app = IPKernelApp.instance()
ident = app.kernel._parent_ident["shell"]
block = b"x" * (10 << 20)
app.shell_socket.send_multipart([*(ident if isinstance(ident, list) else [ident]), *[block] * 40], copy=False)
''', statuses=("error",), text="broke its connection to the grader"),
    Case("mkdir_result_json", "a folder where the old grader wrote its result file", '''
import os
for path in ("result.json", "../result.json", ".sa-grader-1.json", ".sa-grader-2.json", ".sa-grader-3.json"):
    try:
        os.mkdir(path)
    except OSError:
        pass
''', statuses=("error",), text="not usable"),
    Case("memory_hog", "allocate far more than the memory limit", '''
import numpy as np
hog = np.ones(2**33)
''', statuses=("error",), text="MemoryError"),
    Case("stack_inspection", "return the reference only when called from the grader", '''
import inspect
import numpy as np

def channel_shuffle_forward(x, groups=2):
    if any("sa-grader" in f.filename or "checks" in f.filename for f in inspect.stack()):
        from sa_numpy.shuffle import channel_shuffle_forward as reference
        return reference(x, groups)
    return x.copy(), groups

def channel_shuffle_backward(dout, cache):
    if any("sa-grader" in f.filename or "checks" in f.filename for f in inspect.stack()):
        from sa_numpy.shuffle import channel_shuffle_backward as reference
        return reference(dout, cache)
    return dout.copy()
''', strict=True, statuses=("error",), text="hidden in --strict grading"),
    Case("imports_the_reference", "the reference itself as the answer", '''
from sa_numpy.shuffle import channel_shuffle_forward, channel_shuffle_backward
''', strict=True, statuses=("error",), text="hidden in --strict grading"),
    Case("reads_the_reference", "the reference's source, bytecode, solution notebook or checks, from disk", '''
import glob, importlib.util, json, os, sa_numpy
here = os.path.dirname(sa_numpy.__file__)
found = {}
for path in [*glob.glob(here + "/__pycache__/shuffle*.pyc"), here + "/shuffle.py"]:
    try:
        spec = importlib.util.spec_from_file_location("stolen", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found.setdefault("channel_shuffle_forward", module.channel_shuffle_forward)
    except Exception:
        pass
for path in (os.path.dirname(here) + "/solutions/04_shuffle.ipynb", os.path.dirname(here) + "/course/exercises/04_shuffle.py"):
    try:
        exec(open(path).read().split("### BEGIN SOLUTION")[0], found)
    except Exception:
        pass
globals().update({k: v for k, v in found.items() if k.startswith("channel_shuffle")})
''', strict=True),
    Case("torch_channel_shuffle", "another library's channel shuffle: torch.nn.functional.channel_shuffle, and "
         "the same with C/groups groups as its inverse", '''
import torch
import torch.nn.functional as F

def channel_shuffle_forward(x, groups=2):
    return F.channel_shuffle(torch.from_numpy(x), groups).numpy(), groups

def channel_shuffle_backward(dout, cache):
    return F.channel_shuffle(torch.from_numpy(dout), dout.shape[1] // cache).numpy()
''', strict=True, statuses=("error",), text="not available in --strict grading"),
    Case("reads_the_hidden_seed", "look for the grader's seed, then replay answers recorded for the check cell's inputs", '''
import glob, os
seen = [os.environ.get(k) for k in os.environ if "SEED" in k.upper()]
for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline") + glob.glob("../*") + glob.glob("*"):
    try:
        seen.append(open(path, "rb").read(10000))
    except OSError:
        pass
REPLAY = {replay}

def channel_shuffle_forward(x, groups=2):
    key = x.tobytes().hex()[:64]
    return (np.array(*REPLAY[key]) if key in REPLAY else x.copy()), groups

def channel_shuffle_backward(dout, cache):
    key = dout.tobytes().hex()[:64]
    return np.array(*REPLAY[key]) if key in REPLAY else dout.copy()
''', strict=True, text="out (groups=2)"),
    Case("deep_tree", "a 1,500-deep folder tree holding a folder it may not read and a link out of its scratch, "
         "which a recursive removal cannot take apart", '''
import os
top = os.open(".", os.O_RDONLY)
for _ in range(1500):
    os.mkdir("d")
    os.chdir("d")
os.mkdir("locked")
open("locked/file", "w").close()
os.chmod("locked", 0)
os.symlink("{canary}", "out")
os.fchdir(top)
''', statuses=("fail",), text="out (groups=2)"),
    Case("log_flood", "find every writable file it inherited (the grader's log of the kernel) and write 8 MB to it",
         '''
import fcntl, os, stat
grown = []
for fd in range(256):
    try:
        info, flags = os.fstat(fd), fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        continue
    if stat.S_ISREG(info.st_mode) and flags & os.O_ACCMODE != os.O_RDONLY:
        for _ in range(128):
            os.write(fd, b"x" * (64 << 10))
        grown.append((fd, os.fstat(fd).st_size))
if grown:
    raise RuntimeError(f"grew files it inherited: {grown}")
''', statuses=("fail",), text="out (groups=2)"),
    Case("huge_code_cell", "a 4 MB code cell (a list literal), which the grader's parser would turn into gigabytes "
         "while its neighbours' clocks run", "HUGE = [" + "0," * 2_000_000 + "]\n", statuses=("error",),
         text="the grader reads"),
    Case("bad_json", "not JSON at all", raw=b'{"cells": [', statuses=("error",), text="not JSON"),
    Case("tags_not_a_list", "cell tags as a string", raw=b"TAGS", statuses=("error",), text="must be a list of strings"),
    Case("metadata_of_the_wrong_type", "course metadata that is a string", raw=b"META", statuses=("error",),
         text="must be an object"),
    Case("missing_fields", "a notebook without cells, and a cell without source", raw=b"MISSING", statuses=("error",),
         text="'cells' must be a list"),
    Case("cell_without_source", "a code cell without its source", raw=b"NOSOURCE", statuses=("error",),
         text="'source' must be a string"),
]
