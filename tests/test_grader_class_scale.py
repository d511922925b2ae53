"""The class-scale benchmark (benchmarks/grade_class.py) in a small case: 12 notebooks, correct, wrong,
unattempted and one hostile, graded with --strict --jobs 2, with every check of the 200-notebook run."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_class_is_graded_with_every_check_holding(tmp_path):
    out = tmp_path / "grade_class.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "grade_class.py"), "--notebooks", "12",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    assert "| correct (6) | 6 pass |" in text and "| unattempted (1) | 1 not attempted |" in text
    assert "| hostile (1) |" in text and "| wrong (4) | 4 fail |" in text
    assert text.rstrip().endswith("no process and no scratch folder left: all held.")
