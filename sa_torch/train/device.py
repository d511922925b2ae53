"""Device helpers for training: which device, the precision it trains in, waiting for it, and
denormal floats on a CPU.

**Precision** (``--amp auto|bf16|fp16|off``). :func:`precision_for` is what ``auto`` picks:
bf16 autocast on a GPU that computes bfloat16 in hardware (compute capability 8.0 and up: A100,
H100, RTX 30 and 40 series); fp16 autocast with a gradient scaler on older GPUs (P100, V100, T4,
where bf16 would only be emulated: ``torch.cuda.is_bf16_supported()`` counts emulation unless
``including_emulation=False``); float32 on a CPU or an Apple GPU. :func:`precision_problem`
says why a device cannot run a precision asked for (bf16 on a GPU without it, fp16 on a CPU),
and :func:`describe_device` gives the device and its precision in one line.

**Denormals** (float32 magnitudes below 1.2e-38) take a slow path on x86 CPUs, often tens of
times slower per operation. :func:`flush_denormal` turns them into zeros for the duration
of a block and restores the previous mode afterwards. ``torch.set_flush_denormal`` sets the
calling thread only: the intra-op (OpenMP) worker threads keep their own mode, so on a
2-thread machine about half of a large operation's elements are flushed
(:func:`denormals_flushed` tests the calling thread). In this project's CPU runs (plain and
SA ResNet-20 on random, stand-in and generated images, up to 400 steps) no denormal appeared in
any activation, gradient, weight or momentum buffer, and flushing changed no step time: the
guard is for runs where they do appear.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

_DENORMAL = 1e-39   # below float32's smallest normal number, 1.18e-38
PRECISIONS = ("auto", "bf16", "fp16", "off")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_WORDS = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler",
                   "off": "float32 (no autocast)"}
NATIVE_BF16 = (8, 0)   # the first compute capability with bfloat16 arithmetic (Ampere)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else cuda, then mps, then cpu."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device | str) -> bool:
    """Whether the CUDA ``device`` computes bfloat16 in hardware: the rule of
    ``torch.cuda.is_bf16_supported(including_emulation=False)`` (compute capability 8.0 or
    newer; any ROCm GPU), asked of ``device`` itself rather than of the current device."""
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device) >= NATIVE_BF16


def precision_for(device: torch.device | str) -> str:
    """What ``--amp auto`` trains in on ``device``: ``"bf16"`` on a GPU with native bfloat16,
    ``"fp16"`` (with a gradient scaler) on an older GPU, ``"off"`` (float32) on a CPU or an
    Apple GPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return "off"
    return "bf16" if native_bf16(device) else "fp16"


def precision_problem(precision: str, device: torch.device | str) -> str | None:
    """Why ``device`` cannot train in ``precision`` (one of :data:`PRECISIONS` but ``auto``),
    or None when it can."""
    device = torch.device(device)
    if precision == "bf16" and device.type == "cuda" and not native_bf16(device):
        return (f"{describe_gpu(device)} has no native bfloat16 (compute capability {NATIVE_BF16[0]}."
                f"{NATIVE_BF16[1]} or newer has it; below, autocast only emulates it, slowly)")
    if precision == "bf16" and device.type == "mps" and not torch.backends.mps.is_macos_or_newer(14, 0):
        return "bfloat16 on an Apple GPU needs macOS 14 or newer"
    if precision == "fp16" and device.type == "cpu":
        return "fp16 autocast with a gradient scaler is for GPUs (a CPU has no fast float16 arithmetic)"
    return None


def describe_gpu(device: torch.device | str) -> str:
    """``"cuda:1 (Tesla T4, sm_75)"``: the CUDA device, its name and compute capability."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"{device} ({torch.cuda.get_device_name(device)}, sm_{major}{minor})"


def describe_device(device: torch.device | str, precision: str | None = None) -> str:
    """One line: the device (with its GPU's name and compute capability on CUDA) and the
    precision it trains in (``precision_for(device)`` when None):
    ``"cuda:0 (NVIDIA A100-SXM4-40GB, sm_80), bf16 autocast"``, ``"cpu, float32 (no autocast)"``."""
    device = torch.device(device)
    where = describe_gpu(device) if device.type == "cuda" else str(device)
    return f"{where}, {PRECISION_WORDS[precision or precision_for(device)]}"


def autocast(device: torch.device | str, precision: str):
    """The autocast region of ``precision`` (``"bf16"``, ``"fp16"``; ``"off"``: autocast off)."""
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES.get(precision, torch.bfloat16),
                          enabled=precision in AUTOCAST_DTYPES)


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler | None:
    """The gradient scaler an fp16 run needs (None for the other precisions): it multiplies the
    loss so that small float16 gradients do not round to zero, divides the gradients back
    before the optimizer step, and skips a step whose gradients overflowed."""
    return torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None


def backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler | None = None) -> None:
    """``loss.backward()`` and ``opt.step()``, through ``scaler`` when there is one."""
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def sync(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (so that a timer measures it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def denormals_flushed() -> bool:
    """Whether this thread's CPU ops flush denormals to zero (torch has no getter for it)."""
    return torch.tensor([_DENORMAL], dtype=torch.float32).mul(1.0).item() == 0.0


@contextmanager
def flush_denormal(device: torch.device | str):
    """On a CPU, flush denormals to zero inside the block, then restore the mode found.

    Elsewhere (CUDA, MPS) it does nothing: there, denormals cost no extra time.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
