"""Points per check, and the points file an instructor edits (``--points FILE``).

Each check of an exercise earns its points on its own, so exercise 03 (GroupNorm, then the spatial
gate) can earn part of its points. Without a file the points are the course's
(:data:`sa_course.checks.EXERCISES`), an exercise's split over its checks, the first check taking
what does not divide evenly: 01 grouping 2; 02 channel_gate 2; 03 groupnorm 2 and spatial_gate 1;
04 shuffle 1; 05 sa_layer 2. A file (TOML, or JSON of the same shape) changes any of them::

    # points.toml: one table per exercise, one number per check
    [03_spatial_gate]
    groupnorm = 1.5
    spatial_gate = 1.5

    [05_sa_layer]
    sa_layer = 4

A file that breaks a rule is refused with one line naming the key and the rule (:class:`PointsError`).
"""
from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from ..checks import EXERCISES

Table = dict[str, dict[str, float]]


class PointsError(ValueError):
    """A points file that breaks a rule; the message names the key and the rule."""


def check_name(check) -> str:
    """A check's name in the points file: its function's name without ``check_``."""
    return check.__name__.removeprefix("check_")


def defaults() -> Table:
    """The course's points, each exercise's split over its checks (the first takes the remainder)."""
    table = {}
    for name, exercise in EXERCISES.items():
        n = len(exercise.checks)
        share, rest = divmod(exercise.points, n)
        table[name] = {check_name(check): share + (rest if i == 0 else 0)
                       for i, (check, _names) in enumerate(exercise.checks)}
    return table


def _parse(path: Path) -> dict:
    text = path.read_bytes()
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:       # tomllib.TOMLDecodeError and JSON's are ValueErrors
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise PointsError(f"{path.name}: not {kind} ({exc})") from None


def load(path: Path | None) -> Table:
    """The points table: the defaults, changed by the file at ``path`` (None: the defaults)."""
    table = defaults()
    if path is None:
        return table
    path = Path(path)
    try:
        data = _parse(path)
    except OSError as exc:
        raise PointsError(f"{path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise PointsError(f"{path.name}: the top level must be a table of exercises, got {type(data).__name__}")
    for exercise, checks in data.items():
        if exercise not in table:
            raise PointsError(f"{path.name}: {exercise!r} is not an exercise: use one of {', '.join(table)}")
        example = " ".join(f"{c} = {v}" for c, v in table[exercise].items())
        if not isinstance(checks, dict):
            raise PointsError(f"{path.name}: {exercise} must be a table of its checks' points "
                              f"([{exercise}] {example}), got {checks!r:.40}")
        for check, value in checks.items():
            key = f"{exercise}.{check}"
            if check not in table[exercise]:
                raise PointsError(f"{path.name}: {key} is not a check of {exercise}: its checks are "
                                  f"{', '.join(table[exercise])}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise PointsError(f"{path.name}: {key} = {value!r:.40}: points must be a number >= 0")
            table[exercise][check] = value
    return table


def number(value: float) -> float | int:
    """Points as the gradebook writes them: 2, not 2.0; 1.5 as 1.5; sums rounded off float noise."""
    value = round(float(value), 6)
    return int(value) if value.is_integer() else value


def score(row, table: Table | None = None):
    """Set ``row.points`` and ``row.max_points`` from the table: per check that passed when the row
    has its checks' results, else all or nothing by the row's status. Returns the row."""
    table = defaults() if table is None else table
    checks = table.get(row.exercise, {})
    row.max_points = number(sum(checks.values()))
    results = {c.get("check"): c.get("status") for c in getattr(row, "checks", None) or ()}
    if results:
        row.points = number(sum(v for c, v in checks.items() if results.get(c) == "pass"))
    else:
        row.points = row.max_points if row.status == "pass" else 0
    return row
