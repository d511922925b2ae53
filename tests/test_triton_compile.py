"""The Triton kernels compiled for real GPUs, without one: benchmarks/triton_kernels.py --quick
compiles every kernel of the fast SA path, as the forward and backward launch it, for the oldest
architecture the path runs Triton on (sm_75) and for sm_90, in float32 and bfloat16, both
layouts, for CIFAR ResNet-20's last stage (the widest channels_last tile) and ImageNet
ResNet-50's first (the longest NCHW tile), with the ptxas of the Triton wheel.

A compile error, or a spill in any of these tiles (each is one the models use), fails."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
KERNELS = {"_forward_kernel", "_backward_kernel", "_param_grads_kernel"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every row of the quick run: a launch and its result per architecture."""
    out = tmp_path_factory.mktemp("triton") / "kernels.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}     # compiled, not interpreted
    run = subprocess.run([sys.executable, str(BENCHMARKS / "triton_kernels.py"), "--quick", "--jobs", "2",
                          "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=BENCHMARKS, env=env)
    assert out.exists(), run.stderr[-3000:]
    return run, json.loads(out.read_text())


def where(row, arch) -> str:
    return f"{row['kernel']} sm_{arch} {row['layout']} {row['dtype']} {row['shape']} {row['tile']}"


def test_every_kernel_compiles_for_each_architecture_layout_and_dtype(compiled):
    run, rows = compiled
    failed = [f"{where(r, a)}: {res['error']}" for r in rows for a, res in r["results"].items() if "error" in res]
    assert not failed, "\n".join(failed)
    assert run.returncode == 0, run.stderr[-3000:]
    assert {r["kernel"] for r in rows} == KERNELS
    assert {(r["layout"], r["dtype"]) for r in rows} == {(layout, dtype) for layout in ("NCHW", "channels_last")
                                                        for dtype in ("float32", "bfloat16")}
    assert all(set(r["results"]) == {"75", "90"} for r in rows)
    assert all(0 < res["regs"] <= 255 for r in rows for res in r["results"].values())


def test_no_kernel_spills_in_a_tile_the_models_use(compiled):
    _, rows = compiled
    spills = [f"{where(r, a)}: {res['spill_stores']} B stored, {res['spill_loads']} B loaded"
              for r in rows for a, res in r["results"].items() if res.get("spill_stores") or res.get("spill_loads")]
    assert not spills, "\n".join(spills)
