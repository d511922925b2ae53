"""Which backend runs the fast SA path on a CUDA device: the Triton kernels from compute
capability 7.5 on, the eager path (torch ops) on older GPUs, announced once per GPU. No GPU is
needed: the tests give a stand-in for a CUDA tensor and fake the device's name and capability."""
import importlib.util
import warnings
from dataclasses import dataclass

import pytest
import torch

from sa_torch import fused

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)


@dataclass
class CudaMap:
    """What the dispatch reads of a (B, C, H, W) CUDA tensor."""
    device: torch.device
    dtype: torch.dtype = torch.float32
    shape: tuple = (2, 8, 4, 3)

    def numel(self) -> int:
        return 2 * 8 * 4 * 3


GPUS = {0: ("Tesla P100-PCIE-16GB", (6, 0)), 1: ("Tesla T4", (7, 5)), 2: ("NVIDIA H100 80GB HBM3", (9, 0)),
        3: ("Tesla V100-SXM2-16GB", (7, 0))}


@pytest.fixture
def gpus(monkeypatch):
    """Four fake GPUs; counts how often each capability is asked for."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: asked.append(i) or GPUS[i][1])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: GPUS[i][0])
    fused.triton_supports.cache_clear()
    yield asked
    fused.triton_supports.cache_clear()


@pytest.mark.parametrize("index", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_triton_runs_from_compute_capability_7_5_without_a_warning(gpus, index, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fused.backend_name(CudaMap(torch.device("cuda", index), dtype)) == "triton"


@pytest.mark.parametrize("index", [0, 3])
def test_an_older_gpu_runs_the_eager_path_announced_once_naming_it(gpus, index):
    name, (major, minor) = GPUS[index]
    x = CudaMap(torch.device("cuda", index))
    with pytest.warns(RuntimeWarning) as record:
        assert fused.backend_name(x) == "eager"
    assert len(record) == 1
    message = str(record[0].message)
    assert name in message and f"capability {major}.{minor}" in message and "7.5" in message
    assert "eager path" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # the second layer, the next step: silent
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            assert fused.backend_name(CudaMap(torch.device("cuda", index), dtype)) == "eager"
    assert gpus == [index]


def test_each_gpu_is_judged_on_its_own_capability(gpus):
    with pytest.warns(RuntimeWarning, match="P100"):
        assert fused.backend_name(CudaMap(torch.device("cuda", 0))) == "eager"
    assert fused.backend_name(CudaMap(torch.device("cuda", 2))) == "triton"


def test_forcing_triton_on_an_older_gpu_is_refused_naming_the_rule(gpus):
    with pytest.warns(RuntimeWarning), fused.use_backend("triton"):
        with pytest.raises(ValueError, match=r"backend 'triton' cannot run .* on cuda:0 .*compute capability 7\.5"):
            fused.backend_name(CudaMap(torch.device("cuda", 0)))


def test_a_layer_on_triton_launches_one_kernel_forward_two_backward_and_copies_no_parameter(monkeypatch):
    """The fewest launches the maths allows (the statistics and the gate in one, the sums and dx in
    one, then the parameter gradients, which sum over programs), and the six parameters handed to the
    kernels where they lie: no ``torch.cat`` a call. The launches are recorded, not run."""
    from sa_torch import SALayer
    from sa_torch.fused import triton as kernels
    monkeypatch.setenv("TRITON_INTERPRET", "1")                 # lets the triton backend take CPU tensors
    launches = []
    for name in ("_forward_kernel", "_backward_kernel", "_param_grads_kernel"):
        monkeypatch.setattr(getattr(kernels, name), "run",
                            lambda *args, grid, warmup, name=name, **kw: launches.append((name, args)), raising=False)
    monkeypatch.setattr(torch, "cat", lambda *a, **k: pytest.fail("torch.cat in a layer call"))
    layer = SALayer(12, 3, fused=True)
    x = torch.randn(2, 12, 5, 3, requires_grad=True)
    with fused.use_backend("triton"):
        layer(x).sum().backward()
    assert [name for name, _ in launches] == ["_forward_kernel", "_backward_kernel", "_param_grads_kernel"]
    handed = {t.data_ptr() for t in launches[0][1] if isinstance(t, torch.Tensor)}
    assert {p.data_ptr() for p in layer.parameters()} <= handed
