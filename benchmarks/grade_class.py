"""A whole class graded as an instructor grades one: ``python benchmarks/grade_class.py --notebooks 200``.

It writes a class folder of N notebooks, students of five notebooks each (one per exercise):
correct ones (the solutions), wrong ones (a solution with a planted mistake), unattempted ones (the
exercise as shipped) and, in every second student's exercise 04, a hostile one from
``tests/tampering/catalogue.py`` (about 10%). Then it runs
``python -m sa_course.grade --class DIR --strict --jobs 2`` in a process of its own, and checks
that the run ends with a gradebook row per student and a report row for every notebook, that every
correct notebook passes and no other does, that the canary folder the hostile notebooks attack is
unchanged, and that no process and no scratch folder is left. It records the time, the grader's
own peak memory (its VmHWM, read while it runs) and the largest process's of the run (the grader or
a kernel: ``getrusage`` of the children), and writes them with the command, the machine, the date and the load to ``--out``.
Exit status 0 when every check holds.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from report import add_report_arguments, check_report_path, write_report     # noqa: E402
from tampering.catalogue import CASES, WRONG                                  # noqa: E402

EXERCISES = ["01_grouping", "02_channel_gate", "03_spatial_gate", "04_shuffle", "05_sa_layer"]
MISTAKES = {    # a learner's mistake in each solution: old text -> new text
    "01_grouping": ("return dg[:, :k].copy(), dg[:, k:].copy()", "return dg[:, k:].copy(), dg[:, :k].copy()"),
    "02_channel_gate": ("dx0 = dout * gate + dz * cweight / npix", "dx0 = dout * gate"),
    "03_spatial_gate": ("return x1 * gate, (", "return x1 * (1 - gate), ("),
    "04_shuffle": ("return out.copy() if np.shares_memory(out, x) else out, groups", "return x.copy(), groups"),
    "05_sa_layer": ("group_merge_backward(channel_shuffle_backward(dout, shuffle), merge)",
                    "group_merge_backward(dout, merge)"),
}
KINDS = ("correct", "correct", "correct", "wrong", "wrong", "unattempted")


def hostile_cases(sandboxed: bool) -> list:
    """The catalogue's cases that are notebooks of their own (not placeholders the tampering test fills)."""
    return [c for c in CASES if (sandboxed or not c.needs_bwrap)
            and (c.raw is None or not (c.raw.isalpha() and c.raw.isupper()))]


def _notebook(exercise: str, source_of) -> bytes:
    nb = nbformat.read(ROOT / "solutions" / f"{exercise}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "exercise" in cell.metadata.get("tags", []):
                cell.source = source_of(cell.source)
    return nbformat.writes(nb).encode()


def _changed(old: str, new: str):
    def change(source: str) -> str:
        return source.replace(old, new) if old in source else source
    return change


def write_class(room: Path, n: int, fill: dict, cases: list) -> dict[str, str]:
    """N notebooks in DIR/<student>/<exercise>.ipynb; what each one is, by its path in the class folder."""
    kinds = {}
    for i in range(n):
        student, exercise = f"student{i // 5:03d}", EXERCISES[i % 5]
        path = room / student / f"{exercise}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        s = i // 5
        if exercise == "04_shuffle" and s % 2 == 1:
            case = cases[(s // 2) * 7 % len(cases)]                  # spread over the catalogue
            kinds[f"{student}/{path.name}"] = f"hostile: {case.name}"
            if case.raw is not None:
                path.write_bytes(case.raw)
                continue
            source = case.source
            for key, value in {**fill, "{original}": str(path)}.items():
                source = source.replace(key, value)
            path.write_bytes(_notebook(exercise, lambda _s: source if "def channel_shuffle_forward" in source
                                       else WRONG + source))
            continue
        kind = KINDS[(s + i % 5) % len(KINDS)]
        kinds[f"{student}/{path.name}"] = kind
        if kind == "unattempted":
            path.write_bytes((ROOT / "exercises" / f"{exercise}.ipynb").read_bytes())
        else:
            path.write_bytes(_notebook(exercise, _changed(*MISTAKES[exercise]) if kind == "wrong" else str))
    return kinds


def _peak_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def _scratch() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("sa-grade-*") if p.name != "sa-grade-uids"}


def grade(room: Path, out: Path, jobs: int, timeout: float) -> dict:
    """Run the grader on the class in a process of its own: time, peak memory, exit code, output."""
    command = [sys.executable, "-m", "sa_course.grade", "--class", str(room), "--strict", "--jobs", str(jobs),
               "--timeout", f"{timeout:g}", "--gradebook", str(out / "gradebook.csv"), "--reports",
               str(out / "reports"), "--feedback", str(out / "feedback")]
    start, peak, log = time.monotonic(), 0, out / "grader-output.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen(command, cwd=out, stdout=f, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, _peak_kib(proc.pid))
            time.sleep(0.2)
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"code": proc.returncode, "seconds": time.monotonic() - start, "grader_mib": peak / 1024,
            "largest_mib": largest / 1024, "output": log.read_text()}


def check(kinds: dict, out: Path, canary: Path, marker: str, scratch_before: set) -> tuple[list[str], dict]:
    """What went wrong (nothing, when every check holds) and the statuses per kind of notebook."""
    problems, counts = [], {}
    book = list(csv.DictReader((out / "gradebook.csv").open(newline="")))
    students = {path.split("/")[0] for path in kinds}
    if {row["student"] for row in book} != students:
        problems.append(f"gradebook rows {len(book)}, students {len(students)}")
    rows = {}
    for report in (out / "reports").glob("*.json"):
        for row in json.loads(report.read_text())["rows"]:
            rows[row["path"]] = row["status"]
    for path, kind in kinds.items():
        status = rows.get(path)
        counts.setdefault(kind.split(":")[0], {}).setdefault(status, 0)
        counts[kind.split(":")[0]][status] += 1
        if status is None:
            problems.append(f"{path} ({kind}): no row")
        elif (status == "pass") != (kind == "correct") or (kind == "unattempted" and status != "not attempted"):
            problems.append(f"{path} ({kind}): {status}")
    if sorted(p.name for p in canary.iterdir()) != ["keep.txt"] or (canary / "keep.txt").read_text() != "do not touch":
        problems.append("the canary folder changed")
    left = _scratch() - scratch_before
    for _ in range(10):                  # another grader on this machine may be finishing its own
        if not left:
            break
        time.sleep(1)
        left &= _scratch()
    if left:
        problems.append(f"scratch folders left: {sorted(left)}")
    stray = [p.pid for p in psutil.process_iter(["cmdline"])
             if any(marker in part or any(s in part for s in left) for part in p.info["cmdline"] or ())]
    if stray:
        problems.append(f"processes left: {stray}")
    return problems, counts


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} logical cores, {psutil.virtual_memory().total / 2**30:.0f} GiB memory"


def commit() -> str:
    """The commit the grader ran at, and whether the grader's files differed from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "sa_course"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return head + (" with uncommitted changes to sa_course" if dirty else "")


def markdown(args, result: dict, problems: list, counts: dict, kinds: dict, load: tuple) -> str:
    busy = (f" The machine was busy (load average {load[0]:.1f} over 1 minute at the start, above 4): other work "
            f"shared its {os.cpu_count()} cores, so the time is longer than on an idle machine.") if load[0] > 4 else ""
    lines = [f"# Grading a class of {args.notebooks} notebooks", "",
             f"- command: `python benchmarks/grade_class.py --notebooks {args.notebooks} --jobs {args.jobs} "
             f"--timeout {args.timeout:g} --out {args.out}`", "  which runs `python -m sa_course.grade --class DIR "
             f"--strict --jobs {args.jobs} --timeout {args.timeout:g}`",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, at commit {commit()}; "
             f"machine: {machine()}",
             f"- load average at the start: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (1, 5, 15 minutes).{busy}", "",
             "| measured | value |", "|---|---|",
             f"| wall time | {result['seconds']:.0f} s ({result['seconds'] / args.notebooks:.2f} s per notebook) |",
             f"| the grader's own peak memory (VmHWM) | {result['grader_mib']:.0f} MiB |",
             f"| the largest process's peak memory (the grader or a kernel: getrusage) | {result['largest_mib']:.0f} MiB |",
             f"| grader exit status | {result['code']} |", "", "| notebooks | statuses |", "|---|---|"]
    lines += [f"| {kind} ({sum(c.values())}) | {', '.join(f'{n} {s}' for s, n in sorted(c.items(), key=str))} |"
              for kind, c in counts.items()]
    hostile = sorted({k.split(": ")[1] for k in kinds.values() if k.startswith("hostile")})
    lines += ["", f"The hostile notebooks ({len(hostile)} cases of tests/tampering/catalogue.py): "
              + ", ".join(f"`{name}`" for name in hostile) + "."]
    lines += ["", "Checks: a gradebook row per student and a report row per notebook, every correct notebook "
              "passing and no other, the canary folder unchanged, no process and no scratch folder left: " +
              ("all held." if not problems else "FAILED: " + "; ".join(problems))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=200, help="how many notebooks (default 200)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks graded at once (default 2)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per notebook (default 30)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    if args.notebooks < 1 or args.jobs < 1:
        parser.error(f"--notebooks={args.notebooks} and --jobs={args.jobs} must be at least 1")
    check_report_path(args)
    from sa_course.grade import sandbox
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="grade-class-") as tmp:
        tmp = Path(tmp)
        canary, out = tmp / "canary", tmp / "out"
        canary.mkdir(), out.mkdir()
        (canary / "keep.txt").write_text("do not touch")
        marker = f"SA_CLASS_{os.getpid()}_{time.time_ns()}"
        fill = {"{canary}": str(canary), "{marker}": marker, "{venv}": sys.prefix, "{replay}": "{}"}
        kinds = write_class(tmp / "class", args.notebooks, fill, hostile_cases(sandbox.isolation().level == "bwrap"))
        before = _scratch()
        result = grade(tmp / "class", out, args.jobs, args.timeout)
        problems, counts = check(kinds, out, canary, marker, before)
    if result["code"] not in (0, 1):
        problems.append(f"the grader exited {result['code']}: {result['output'][-2000:]}")
    text = markdown(args, result, problems, counts, kinds, load)
    print(text, end="")
    write_report(args, text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
