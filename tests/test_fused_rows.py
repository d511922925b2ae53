"""The rows of the fused path's packed buffers have one set of names: cpu.c's #defines are the
values of sa_torch.fused.rows (the Triton constants are checked in tests/test_triton_sa.py), and
the C source is its own file, shipped with the package."""
import fnmatch
import re
import tomllib
from pathlib import Path

import sa_torch.fused
from sa_torch.fused import cpu as fused_cpu
from sa_torch.fused.rows import Coef, Param, c_names

ROOT = Path(__file__).resolve().parents[1]


def c_defines() -> dict[str, int]:
    return {name: int(value) for name, value in
            re.findall(r"^#define\s+((?:PARAM|COEF|N)_\w+)\s+(\d+)\b", fused_cpu.SOURCE.read_text(), re.M)}


def test_the_c_source_defines_every_param_and_coef_row_as_python_names_it():
    want = {name: value for name, value in c_names().items() if "GRAD" not in name}   # Triton's only
    assert c_defines() == want
    assert {"PARAM_GN_BIAS", "COEF_P", "N_COEF", "N_PARAM"} <= set(want)


def test_the_names_follow_the_buffers_rows():
    assert c_names()["N_COEF"] == len(Coef) == 6 and c_names()["N_PARAM"] == len(Param) == 6
    assert [row.name.lower().replace("gn_", "gn.") for row in Param] == [
        "cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias"]          # the official order


def test_the_c_source_is_a_file_of_the_package_and_no_offset_in_it_is_a_bare_row_number():
    source = fused_cpu.SOURCE
    assert source.parent == Path(sa_torch.fused.__file__).parent and source.suffix == ".c"
    text = source.read_text()
    assert not re.search(r"\b(coef|pr|dparams)\s*(\[|\+)\s*\d", text), "a packed buffer's row indexed by its number"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    shipped = [f"{package}/{pattern}" for package, patterns in data.items() for pattern in patterns]
    assert any(fnmatch.fnmatch("sa_torch.fused/cpu.c", path) or fnmatch.fnmatch("sa_torch/fused/cpu.c", path)
               for path in shipped), f"cpu.c is not package data: {shipped}"
