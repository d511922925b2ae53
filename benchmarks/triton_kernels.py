"""The fast SA path's Triton kernels compiled ahead of time, without a GPU: registers, spills and
shared memory per kernel, architecture, dtype and tile, and the bytes an SA layer moves.

    python benchmarks/triton_kernels.py --out docs/results/triton_kernels.md
    python benchmarks/triton_kernels.py --quick --json /tmp/quick.json    # the subset the test compiles

How: ``sa_torch.fused.triton.forward`` and ``backward`` run on meta tensors (shapes without
memory) of every stage's SA layer in CIFAR ResNet-20 and ImageNet ResNet-50
(benchmarks/sa_shapes.py), NCHW and channels_last, float32, bfloat16 and float16, with each
kernel launch recorded instead of run. Each launch is specialised as Triton's JIT specialises it
on a GPU (Triton's own binder: an integer equal to 1 becomes a constant; pointers and integers
divisible by 16 are marked so) and compiled with ``triton.compile`` for every architecture, by
the ``ptxas`` in the Triton wheel; its ``-v`` report gives registers and spills, Triton's
metadata the shared memory. The architectures: those the installed torch was built for
(``torch.cuda.get_arch_list()``) and the common 7.5, 8.0, 8.6, 8.9 and 9.0, from the oldest the
fast path runs Triton on (``sa_torch.fused.TRITON_MIN_CAPABILITY``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas_version
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import JITFunction, KernelInterface, create_function_from_signature

from bench_train_cpu import run_lines
from report import add_report_arguments, check_report_path, write_report
from sa_shapes import sa_layers
from sa_torch import fused
from sa_torch.fused import triton as fused_triton

COMMON = (75, 80, 86, 89, 90)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
# per architecture: (most resident warps, most resident blocks) an SM holds; 64K registers each
SM_LIMITS = {75: (32, 16), 80: (64, 32), 86: (48, 16), 87: (48, 16), 89: (48, 24), 90: (64, 32),
             100: (64, 32), 103: (64, 32), 120: (48, 24), 121: (48, 24)}
QUICK = {"arches": (75, 90), "dtypes": ("float32", "bfloat16"), "stages": ((64, 8), (256, 56))}


def architectures() -> list[int]:
    built = {int(a[3:]) for a in torch.cuda.get_arch_list() if re.fullmatch(r"sm_\d+", a)}
    oldest = 10 * fused.TRITON_MIN_CAPABILITY[0] + fused.TRITON_MIN_CAPABILITY[1]
    return sorted(a for a in built | set(COMMON) if a >= oldest)


def kernels(kind: type = JITFunction) -> dict[str, KernelInterface]:
    """The kernels of sa_torch.fused.triton by name (``kind=KernelInterface``: interpreted ones too)."""
    return {name: k for name, k in vars(fused_triton).items() if isinstance(k, kind) and name.endswith("_kernel")}


@contextlib.contextmanager
def recorded(launch: bool):
    """Every launch of a kernel of sa_torch.fused.triton inside the block, appended to the list it
    yields as (kernel name, args, kwargs, grid); run as well if ``launch``."""
    launches, found = [], kernels(KernelInterface)

    def recorder(name, kernel):
        def run(*args, grid, warmup, **kwargs):
            launches.append((name, args, kwargs, grid))
            return type(kernel).run(kernel, *args, grid=grid, warmup=warmup, **kwargs) if launch else None
        return run
    for name, k in found.items():
        k.run = recorder(name, k)
    try:
        yield launches
    finally:
        for k in found.values():
            del k.run


def record(shape, groups: int, dtype: torch.dtype, layout: torch.memory_format) -> dict[str, list]:
    """{"forward": [...], "backward": [...]}: each launch as (kernel name, args, kwargs, grid),
    from the Triton backend's forward and backward on meta tensors."""
    x = torch.empty(shape, dtype=dtype, device="meta").contiguous(memory_format=layout)
    params = tuple(torch.empty(shape[1] // (2 * groups), device="meta") for _ in range(6))   # apart, as a layer's
    with recorded(launch=False) as launches:
        out, dx = torch.empty_like(x), torch.empty_like(x)
        coef, saved = fused_triton.forward(x, params, groups, 1e-5, out)
        forward = launches[:]
        fused_triton.backward(torch.empty_like(x), x, coef, saved, params, groups, dx)
    return {"forward": forward, "backward": launches[len(forward):]}


def specialise(name: str, args, kwargs, arch: int) -> dict:
    """What Triton's JIT would compile for this launch on ``arch``: a picklable job."""
    kernel, backend = kernels()[name], make_backend(GPUTarget("cuda", arch, 32))
    kwargs = {**kwargs, "debug": False, "instrumentation_mode": ""}
    bound, specialization, options = create_function_from_signature(kernel.signature, kernel.params, backend)(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return {"kernel": name, "arch": arch, "signature": signature, "constexprs": constexprs, "attrs": attrs,
            "options": options.__dict__}


def job_key(job: dict) -> str:
    return repr(sorted((k, repr(v)) for k, v in job.items()))


def build(job: dict):
    """``triton.compile`` of one job, into Triton's cache: what the JIT would compile at the launch."""
    return triton.compile(ASTSource(kernels()[job["kernel"]], job["signature"], job["constexprs"], job["attrs"]),
                          target=GPUTarget("cuda", job["arch"], 32), options=job["options"])


def compile_job(job: dict) -> dict:
    """Compile one job afresh; registers, spill bytes, stack and shared memory, or the error."""
    log = io.StringIO()
    with tempfile.TemporaryDirectory() as cache:
        triton.knobs.cache.dir, triton.knobs.compilation.always_compile = cache, True
        triton.knobs.nvidia.dump_ptxas_log = True
        try:
            with contextlib.redirect_stdout(log):
                compiled = build(job)
        except Exception as error:                     # a row that says why, not a stopped table
            return {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"}
    text = log.getvalue()
    regs = re.search(r"Used (\d+) registers", text)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if not (regs and frame):
        return {"error": "no ptxas -v report in the compile log"}
    return {"regs": int(regs[1]), "stack": int(frame[1]), "spill_stores": int(frame[2]),
            "spill_loads": int(frame[3]), "shared": compiled.metadata.shared, "num_warps": compiled.metadata.num_warps}


def resident_warps(regs: int, num_warps: int, arch: int) -> int:
    """Warps an SM can hold with this register count (allocated per warp in units of 256)."""
    most_warps, most_blocks = SM_LIMITS.get(arch, (48, 16))
    per_warp = -(-regs * 32 // 256) * 256
    return num_warps * min(65536 // (per_warp * num_warps), most_warps // num_warps, most_blocks)


def tensor_bytes(args) -> int:
    return sum(a.nbytes for a in args if isinstance(a, torch.Tensor))


def plan(arches, dtypes, stages, layers=None) -> tuple[list[dict], dict]:
    """The rows (one per launch of each layer, layout and dtype) and the jobs they need, by key;
    layers are (model, (B, C, H, W), groups), by default every stage's of sa_shapes."""
    rows, jobs = [], {}
    for model, shape, groups in layers or sa_layers():
        if stages and (shape[1], shape[2]) not in stages:
            continue
        for layout_name, layout in LAYOUTS.items():
            for dtype_name in dtypes:
                launches = record(shape, groups, DTYPES[dtype_name], layout)
                for direction, calls in launches.items():
                    for name, args, kwargs, grid in calls:
                        keys = {}
                        for arch in arches:
                            job = specialise(name, args, kwargs, arch)
                            keys[arch] = job_key(job)
                            jobs[keys[arch]] = job
                        tile = " ".join(f"{k}={v}" for k, v in kwargs.items() if k.startswith("BLOCK"))
                        rows.append({"model": model, "shape": list(shape), "groups": groups, "layout": layout_name,
                                     "dtype": dtype_name, "direction": direction, "kernel": name, "tile": tile,
                                     "programs": grid[0] * (grid[1] if len(grid) > 1 else 1) * (grid[2] if len(grid) > 2 else 1),
                                     "bytes": tensor_bytes(args), "keys": keys,
                                     "share": tensor_bytes(a for a in args if isinstance(a, torch.Tensor)
                                                           and a.shape == shape)})
    return rows, jobs


def cell(result: dict, arch: int) -> str:
    if "error" in result:
        return f"**error** {result['error']}"
    text = f"{result['regs']} / {resident_warps(result['regs'], result['num_warps'], arch)}"
    spill = result["spill_stores"] + result["spill_loads"]
    return f"**{text}, spills {result['spill_stores']} + {result['spill_loads']} B**" if spill else text


def kernel_tables(rows, results, arches) -> list[str]:
    lines = []
    for name in kernels():
        mine = [r for r in rows if r["kernel"] == name]
        if not mine:
            continue
        lines += [f"### `{name}`", "", "| model | (B, C, H, W) | layout | dtype | tile | warps | programs | shared (B) | "
                  + " | ".join(f"sm_{a}" for a in arches) + " |", "|---|---|---|---|---|---:|---:|---:|"
                  + "---:|" * len(arches)]
        merged: dict[tuple, list] = {}                     # dtypes with the same compiled kernels share a row
        for r in mine:
            merged.setdefault((r["model"], tuple(r["shape"]), r["layout"], r["tile"], tuple(r["keys"].values())), []).append(r)
        for (model, shape, layout, tile, keys), same in merged.items():
            first = [results[k] for k in keys]
            warps = first[0].get("num_warps", "-")
            shared = max(res.get("shared", 0) for res in first)
            lines.append(f"| {model} | {shape} | {layout} | {', '.join(r['dtype'] for r in same)} | {tile} | {warps} | "
                         f"{same[0]['programs']:,} | {shared} | " + " | ".join(cell(res, a) for res, a in zip(first, arches)) + " |")
        lines.append("")
    return lines


def summary(rows, results, arches) -> list[str]:
    lines = ["| kernel | " + " | ".join(f"sm_{a}" for a in arches) + " |", "|---|" + "---|" * len(arches)]
    for name in kernels():
        cells = []
        for arch in arches:
            mine = [results[r["keys"][arch]] for r in rows if r["kernel"] == name]
            ok = [m for m in mine if "error" not in m]
            if not mine:
                cells.append("-")
                continue
            spills = sum(1 for m in ok if m["spill_stores"] + m["spill_loads"])
            regs = [m["regs"] for m in ok]
            text = (f"{min(regs)}-{max(regs)} regs, {min(resident_warps(m['regs'], m['num_warps'], arch) for m in ok)}+ warps"
                    if ok else "")
            text += f", **{spills} of {len(mine)} spill**" if spills else ", no spill"
            if len(ok) < len(mine):
                text += f", **{len(mine) - len(ok)} errors**"
            cells.append(text)
        if any(c != "-" for c in cells):
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def traffic(rows) -> list[str]:
    """Per SA layer: bytes the launches touch (each tensor argument once a launch) against the minimum."""
    lines = ["| model | (B, C, H, W) | layout | dtype | launches fwd / bwd | forward MB (x minimum) | "
             "backward MB (x minimum) | a program's maps (KB) |", "|---|---|---|---|---|---:|---:|---:|"]
    layers: dict[tuple, dict] = {}
    for r in rows:
        layer = layers.setdefault((r["model"], tuple(r["shape"]), r["layout"], r["dtype"]),
                                  {"forward": [], "backward": [], "share": 0})
        layer[r["direction"]].append(r["bytes"])
        layer["share"] = max(layer["share"], r["share"] / r["programs"])
    for (model, shape, layout, dtype), moved in layers.items():
        size = torch.tensor([], dtype=DTYPES[dtype]).element_size()
        for n in shape:
            size *= n
        minimum = {"forward": 2 * size, "backward": 3 * size}     # x read, out written; x, gy read, dx written
        cells = [f"{sum(moved[d]) / 1e6:,.1f} ({sum(moved[d]) / minimum[d]:.2f}x)" for d in ("forward", "backward")]
        lines.append(f"| {model} | {shape} | {layout} | {dtype} | {len(moved['forward'])} / {len(moved['backward'])} | "
                     + " | ".join(cells) + f" | {moved['share'] / 1e3:,.1f} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", type=int, nargs="+", default=None, metavar="CC",
                   help="compute capabilities as 75, 90, ... (default: torch's and the common ones)")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--quick", action="store_true", help=f"only {QUICK} (what tests/test_triton_compile.py compiles)")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="compiles at a time")
    p.add_argument("--json", default=None, help="also write every row and result here as JSON")
    add_report_arguments(p)
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs={args.jobs} must be at least 1")
    check_report_path(args)
    if not kernels():
        raise SystemExit("TRITON_INTERPRET=1 is set: the kernels are interpreted, not compiled; unset it")
    arches = list(QUICK["arches"]) if args.quick else (args.arch or architectures())
    dtypes = list(QUICK["dtypes"]) if args.quick else args.dtype
    started = datetime.datetime.now(datetime.timezone.utc)
    rows, jobs = plan(arches, dtypes, QUICK["stages"] if args.quick else None)
    print(f"{len(rows)} launches, {len(jobs)} distinct compiles for sm_{', sm_'.join(map(str, arches))}", file=sys.stderr)
    with ProcessPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(compile_job, jobs.values())))
    errors = [r for r in rows if any("error" in results[k] for k in r["keys"].values())]
    text = "\n".join([
        "# The Triton kernels compiled for every architecture", "",
        *run_lines("triton_kernels.py", argv, started, None)[:1],
        f"- date: {started:%Y-%m-%d %H:%M} UTC; Triton {triton.__version__} (ptxas "
        f"{get_ptxas_version(80).split('release ')[-1].split(',')[0]}; ptxas-blackwell for sm_100 and newer), "
        f"torch {torch.__version__}; no GPU: compiled only",
        "- each architecture's cell: registers a thread / warps an SM can hold with them (at most "
        "64K registers an SM, allocated per warp in units of 256); spills in bold (bytes stored + loaded)",
        "- rows: every launch of `sa_torch.fused.triton.forward` and `backward` for the SA layers of each stage "
        "(benchmarks/sa_shapes.py), tile and warps as `_geometry` and the launches choose them", "",
        "## Summary", "", *summary(rows, results, arches), "",
        "## Bytes an SA layer moves", "",
        "On paper: each launch reads or writes each tensor it is given once; the minimum is x read and out "
        "written forward, x and gy read and dx written backward. A launch that walks its channels twice (first "
        "the sums, then the gate or dx) reads its share of the maps again (last column: the most a program of "
        "the layer touches, x, out, gy and dx together); these figures assume the second walk finds it in "
        "cache (L1 or L2); where it does not, add x forward and x and gy backward.", "", *traffic(rows), "",
        "## Per kernel", "", *kernel_tables(rows, results, arches)])
    print(text)
    write_report(args, text)
    if args.json:
        Path(args.json).write_text(json.dumps([{**r, "results": {a: results[k] for a, k in r.pop("keys").items()}}
                                               for r in rows], indent=1))
    if errors:
        print(f"{len(errors)} launches failed to compile on some architecture", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
