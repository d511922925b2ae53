"""sa_numpy is the NumPy reference and nothing else: it imports NumPy and the standard
library only, not even lazily, and its public functions run with everything else blocked."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import sa_numpy

ROOT = Path(__file__).resolve().parents[1]

# A finder that refuses every top-level module but the standard library, NumPy and
# sa_numpy itself: torch, matplotlib, IPython, ipywidgets, nbclient, nbformat, sa_torch
# and sa_course included.
BLOCKER = """
import sys
ALLOWED = set(sys.stdlib_module_names) | {"numpy", "sa_numpy"}
class OnlyNumPy:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in ALLOWED:
            raise ImportError(f"{name} is blocked for this test")
        return None
sys.meta_path.insert(0, OnlyNumPy())
"""

# Every public function, called once on small inputs whose axes all differ in size.
RUN_PUBLIC_API = """
import importlib
import numpy as np
import sa_numpy as san
for name in MODULES:
    importlib.import_module(name)
rng = np.random.default_rng(0)
B, C, H, W, G = 2, 24, 5, 3, 3
x = rng.normal(size=(B, C, H, W))
p = san.random_params(C, G)
out, cache = san.sa_forward(x, p, G)
dx, grads = san.sa_backward(np.ones_like(out), cache)
fout, fcache = san.sa_forward_fused(x, p, G)
fdx, fgrads = san.sa_backward_fused(np.ones_like(out), fcache)
san.compare("out", fout, out)
san.compare("dx", fdx, dx)
layer = san.SALayer(C, G, dtype=np.float64)
layer.load_state_dict(p)
layer.backward(np.ones_like(layer.forward(x)))
(x0, x1), split = san.group_split_forward(x, G)
san.group_split_backward((x0, x1), split)
y0, c0 = san.channel_gate_forward(x0, p["cweight"], p["cbias"])
san.channel_gate_backward(y0, c0)
n, cn = san.groupnorm_forward(x1, p["gn.weight"], p["gn.bias"], 4 // 4)
san.groupnorm_backward(n, cn)
y1, c1 = san.spatial_gate_forward(x1, p["sweight"], p["sbias"], p["gn.weight"], p["gn.bias"])
san.spatial_gate_backward(y1, c1)
y, merge = san.group_merge_forward(y0, y1, B)
san.group_merge_backward(y, merge)
s, sc = san.channel_shuffle_forward(y, 2)
san.channel_shuffle_backward(s, sc)
san.numerical_gradient(lambda v: (v ** 2).sum(), x[:1, :2, :2, :2].copy())
san.rel_error(x, x)
loaded = sorted(m.partition(".")[0] for m in sys.modules if not m.startswith("_"))
outside = sorted(set(loaded) - set(sys.stdlib_module_names) - {"numpy", "sa_numpy", "cython_runtime"})
assert not outside, outside
print("ok")
"""


def sa_numpy_modules() -> list[str]:
    return sorted(f"sa_numpy.{m.name}" for m in pkgutil.iter_modules(sa_numpy.__path__))


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_sa_numpy_imports_and_runs_with_only_numpy_allowed():
    modules = sa_numpy_modules()
    assert {"sa_numpy.layer", "sa_numpy.fused", "sa_numpy.gradcheck", "sa_numpy.validate"} <= set(modules)
    result = run(BLOCKER + f"MODULES = {modules!r}\n" + RUN_PUBLIC_API)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_blocker_really_blocks_torch_matplotlib_and_jupyter():
    for name in ("torch", "matplotlib", "IPython", "ipywidgets", "nbclient", "nbformat", "sa_torch", "sa_course"):
        result = run(BLOCKER + f"import {name}\n")
        assert result.returncode != 0 and f"{name} is blocked" in result.stderr, name


def test_sa_numpy_source_names_no_other_package():
    """Not even a lazy import inside a function: only numpy, the standard library and itself."""
    import ast
    allowed = set(sys.stdlib_module_names) | {"numpy", "sa_numpy"}
    for path in sorted((ROOT / "sa_numpy").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert all(n.partition(".")[0] in allowed for n in names), f"{path.name}: imports {names}"
