"""The fast SA path's first minute on a GPU: every backend against float64, each run twice for
bitwise equality, and each Triton kernel's time and bandwidth against the device's peak.

    python benchmarks/gpu_smoke.py --out docs/results/gpu_smoke.md          # on a CUDA GPU, under a minute
    python benchmarks/gpu_smoke.py --tiny --out /tmp/smoke.md               # on a CPU: a tiny layer, interpreted

For the SA layer of every stage of CIFAR ResNet-20 and ImageNet ResNet-50
(benchmarks/sa_shapes.py), NCHW and channels_last, float32, bfloat16 and float16 maps, random
parameters:

- paths: ``triton`` and ``eager`` (each backend's forward and backward passes) and ``operator``
  (``SALayer(fused=True)`` forward and autograd backward, through the backend the dispatch
  picks), against the eager passes in float64 on the same (rounded) input: the largest error of
  out, dx, the coefficients and the parameter gradients, each relative to its largest value,
  within the tolerance of the map's dtype (out and dx are stored in it);
- twice: the second run's outputs bitwise equal to the first's;
- each Triton launch replayed alone: median time (``triton.testing.do_bench``, L2 flushed before
  each run), the bytes of the tensors it is given over that time, and that against the device's
  peak (memory clock x bus width x 2), beside one copy of the map.

First the kernels are compiled for this GPU in parallel processes into Triton's cache (the jobs
of benchmarks/triton_kernels.py), so that the checks do not wait on one compile at a time; that
time is reported on its own. Every row goes to --out as soon as it is measured. ``--tiny`` runs
a small layer on the CPU with the kernels in Triton's interpreter (times are the
interpreter's). The exit status is 1 when a check fails.
"""
from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from report import add_report_arguments, check_report_path
from sa_shapes import sa_layers

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
STORED = {torch.float32: 1e-5, torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}   # out, dx: in the map's dtype
COMPUTED = {"coef": 1e-5, "dparams": 1e-4}                                          # float32, row by row
TINY = {"tiny, odd groups": (2, 3, [(12, 3)])}
EPS = 1e-5


class Rows:
    """Lines printed and appended to ``path`` (when given) one at a time, as they are measured."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def __call__(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            if self.path:
                with self.path.open("a") as f:
                    f.write(line + "\n")


def make_case(shape, groups: int, dtype, layout, device, seed: int = 0):
    """x = 2 randn + 1 and gy = randn (B, C, H, W) of dtype and layout; the six float32 parameters
    (K,) each, apart as a layer's lie (the Triton kernels read them in place)."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = (2 * torch.randn(shape, generator=g, device=device) + 1).to(dtype).contiguous(memory_format=layout)
    gy = torch.randn(shape, generator=g, device=device).to(dtype).contiguous(memory_format=layout)
    params = tuple(torch.randn(shape[1] // (2 * groups), generator=g, device=device) for _ in range(6))
    return x, gy, params


def passes(backend, x, gy, params, groups) -> dict:
    out, dx = torch.empty_like(x), torch.empty_like(x)
    coef, saved = backend.forward(x, params, groups, EPS, out)
    dparams = backend.backward(gy, x, coef, saved, params, groups, dx)
    return {"out": out, "dx": dx, "coef": coef, "dparams": dparams}


def operator(x, gy, params, groups) -> dict:
    """SALayer(fused=True): out, x's gradient and the six parameter gradients as rows."""
    from sa_torch import SALayer
    layer = SALayer(x.shape[1], groups, fused=True).to(x.device)
    with torch.no_grad():
        for p, row in zip(layer.parameters(), params):
            p.copy_(row.view(p.shape))
    x = x.detach().requires_grad_(True)
    out = layer(x)
    out.backward(gy)
    return {"out": out.detach(), "dx": x.grad, "dparams": torch.stack([p.grad.reshape(-1) for p in layer.parameters()])}


def worst(got: torch.Tensor, want: torch.Tensor, rows: bool) -> float:
    """Largest |got - want| relative to the largest |want| (of each row, for coef and dparams)."""
    err, scale = (got.double() - want).abs(), want.abs()
    if rows:
        return (err.flatten(1).amax(1) / scale.flatten(1).amax(1).clamp_min(1e-30)).max().item()
    return (err.max() / scale.max().clamp_min(1e-30)).item()


def check(run, want: dict, dtype) -> tuple[list[str], bool]:
    """Cells (each output's error, then whether a second run is bitwise the same) and the verdict."""
    first, second = run(), run()
    cells, ok = [], True
    for key in ("out", "dx", "coef", "dparams"):
        if key not in first:
            cells.append("-")
            continue
        err = worst(first[key], want[key], rows=key in COMPUTED)
        ok &= err <= (COMPUTED.get(key) or STORED[dtype])
        cells.append(f"{err:.1e}")
    same = all(torch.equal(first[k], second[k]) for k in first)
    return cells + ["yes" if same else "**no**"], ok and same


def time_ms(fn, device) -> float:
    if device.type == "cuda":
        from triton.testing import do_bench
        return do_bench(fn, warmup=5, rep=20, return_mode="median")
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def peak_bytes_per_s(device) -> float | None:
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8


def warm_triton_cache(layers, dtypes, device, jobs: int) -> tuple[int, float]:
    """Compile every launch's kernel for this GPU in ``jobs`` processes into Triton's cache."""
    import triton_kernels
    start = time.perf_counter()
    major, minor = torch.cuda.get_device_capability(device)
    _, todo = triton_kernels.plan([10 * major + minor], dtypes, None, layers)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(triton_kernels.build, todo.values()))
    return len(todo), time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="a small layer on the CPU, kernels in Triton's interpreter")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1), help="compiles at a time")
    add_report_arguments(p)
    args = p.parse_args(argv)
    check_report_path(args)
    if args.tiny:
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("--tiny needs Triton's interpreter, and triton was imported without TRITON_INTERPRET=1")
        os.environ["TRITON_INTERPRET"] = "1"
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_smoke.py needs a CUDA GPU and torch.cuda.is_available() is False here; "
                         "on a CPU, --tiny runs it on a small layer with the kernels interpreted")
    else:
        device = torch.device("cuda")
    from triton_kernels import recorded, tensor_bytes   # imports triton: after TRITON_INTERPRET is settled
    from sa_torch import fused
    from sa_torch.fused import eager as fused_eager, triton as fused_triton
    import triton

    layers = sa_layers(TINY) if args.tiny else sa_layers()
    dtypes = [DTYPES[d] for d in args.dtype]
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = Rows(args.out)
    peak = peak_bytes_per_s(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, Triton interpreter"
    rows("# The fast SA path on one device: checks and kernel times", "",
         f"- command: `python benchmarks/gpu_smoke.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
         f"- date: {started:%Y-%m-%d %H:%M} UTC; device: {name}"
         + (f", compute capability {'.'.join(map(str, torch.cuda.get_device_capability(device)))}, "
            f"peak memory bandwidth {peak / 1e9:,.0f} GB/s" if peak else ""),
         f"- torch {torch.__version__}, Triton {triton.__version__}"
         + (f", CUDA {torch.version.cuda}, dispatch picks `{fused.backend_name(torch.empty(1, device=device))}` "
            "for float32" if device.type == "cuda" else ""), "")
    if device.type == "cuda":
        count, seconds = warm_triton_cache(layers, args.dtype, device, args.jobs)
        rows(f"- {count} kernels compiled for this GPU in {seconds:.1f} s ({args.jobs} processes), before the clock "
             "of the checks", "")
    rows("## Against float64", "",
         "Largest error relative to the largest value (coef and dparams: of each row); tolerance out, dx: "
         + ", ".join(f"{str(d)[6:]} {t:.1e}" for d, t in STORED.items() if d in dtypes)
         + f"; coef {COMPUTED['coef']:.0e}, dparams {COMPUTED['dparams']:.0e}.", "",
         "| model | (B, C, H, W) | G | layout | dtype | path | out | dx | coef | dparams | twice bitwise | ok |",
         "|---|---|---:|---|---|---|---:|---:|---:|---:|---|---|")
    checks_start, failures, cases = time.perf_counter(), 0, []
    for model, shape, groups in layers:
        for layout_name, layout in LAYOUTS.items():
            for dtype in dtypes:
                cases.append((model, shape, groups, layout_name, layout, dtype))
                x, gy, params = make_case(shape, groups, dtype, layout, device)
                want = passes(fused_eager, x.double(), gy.double(), tuple(p.double() for p in params), groups)
                paths = {"triton": lambda: passes(fused_triton, x, gy, params, groups),
                         "eager": lambda: passes(fused_eager, x, gy, params, groups),
                         "operator": lambda: operator(x, gy, params, groups)}
                for path, run in paths.items():
                    cells, ok = check(run, want, dtype)
                    failures += not ok
                    rows(f"| {model} | {shape} | {groups} | {layout_name} | {str(dtype)[6:]} | {path} | "
                         + " | ".join(cells) + f" | {'yes' if ok else '**FAIL**'} |")
                del x, gy, want
    rows("", f"Checks: {time.perf_counter() - checks_start:.1f} s, {failures} failed.", "",
         "## Kernel times", "",
         "Each launch alone, then the Triton backend's forward and backward as a layer calls them "
         "(allocations and launches included): " + ("the median of do_bench's runs, L2 flushed before each"
                                                    if device.type == "cuda" else "one interpreted run")
         + "; bytes: the tensors each launch is given, once each.", "",
         "| model | (B, C, H, W) | layout | dtype | kernel | tile | programs | time (us) | MB | GB/s | of peak |",
         "|---|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for model, shape, groups, layout_name, layout, dtype in cases:
        x, gy, params = make_case(shape, groups, dtype, layout, device)
        copy = torch.empty_like(x)
        with recorded(launch=True) as launches:
            passes(fused_triton, x, gy, params, groups)
        entries = [("copy of x", "", 1, lambda: copy.copy_(x), 2 * x.nbytes)]
        for kname, args_, kwargs, grid in launches:
            kernel = getattr(fused_triton, kname)
            tile = " ".join(f"{k}={v}" for k, v in kwargs.items() if k.startswith("BLOCK") or k == "num_warps")
            programs = grid[0] * (grid[1] if len(grid) > 1 else 1) * (grid[2] if len(grid) > 2 else 1)
            entries.append((kname, tile, programs, lambda k=kernel, g=grid, a=args_, kw=kwargs: k[g](*a, **kw),
                            tensor_bytes(args_)))
        entries.append(("forward + backward", "", sum(e[2] for e in entries[1:]),
                        lambda: passes(fused_triton, x, gy, params, groups), sum(e[4] for e in entries[1:])))
        for kname, tile, programs, fn, nbytes in entries:
            ms = time_ms(fn, device)
            rate = nbytes / (ms / 1e3)
            rows(f"| {model} | {shape} | {layout_name} | {str(dtype)[6:]} | {kname} | {tile} | {programs:,} | "
                 f"{1e3 * ms:,.1f} | {nbytes / 1e6:,.2f} | {rate / 1e9:,.1f} | "
                 + (f"{rate / peak:.0%}" if peak else "-") + " |")
        del x, gy, copy, launches
    rows("", f"Whole run: {(datetime.datetime.now(datetime.timezone.utc) - started).total_seconds():.0f} s.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
