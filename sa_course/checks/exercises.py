"""The exercises: for each notebook, its title, its points and its checks with the functions each takes."""
from __future__ import annotations

from dataclasses import dataclass

from .channel_gate import check_channel_gate
from .grouping import check_grouping
from .harness import CheckFailure
from .sa_layer import check_sa_layer
from .shuffle import check_shuffle
from .spatial_gate import check_groupnorm, check_spatial_gate


@dataclass(frozen=True)
class Exercise:
    """One exercise notebook: its title, its points and its checks with the functions each takes."""
    title: str
    points: int
    checks: tuple

    @property
    def functions(self) -> tuple[str, ...]:
        """Every function the learner writes for this exercise, in the order the checks take them."""
        return tuple(name for _check, names in self.checks for name in names)


EXERCISES = {
    "01_grouping": Exercise("Feature grouping", 2, (
        (check_grouping, ("group_split_forward", "group_split_backward",
                          "group_merge_forward", "group_merge_backward")),)),
    "02_channel_gate": Exercise("Channel gate", 2, (
        (check_channel_gate, ("channel_gate_forward", "channel_gate_backward")),)),
    "03_spatial_gate": Exercise("GroupNorm and spatial gate", 3, (
        (check_groupnorm, ("groupnorm_forward", "groupnorm_backward")),
        (check_spatial_gate, ("spatial_gate_forward", "spatial_gate_backward")))),
    "04_shuffle": Exercise("Channel shuffle", 1, (
        (check_shuffle, ("channel_shuffle_forward", "channel_shuffle_backward")),)),
    "05_sa_layer": Exercise("The whole layer", 2, (
        (check_sa_layer, ("sa_forward", "sa_backward")),)),
}


def stub_message(function: str) -> str:
    """The text of the NotImplementedError in an exercise's stub for ``function``."""
    return f"{function} is yours to write: replace this line with your code"


def run_check(check, names: tuple[str, ...], namespace: dict) -> None:
    """Run one check on the functions ``names`` of ``namespace``. Raises like the checks do."""
    missing = [n for n in names if n not in namespace]
    if missing:
        raise CheckFailure(f"{', '.join(missing)} not defined: run the cell that defines "
                             f"{'it' if len(missing) == 1 else 'them'} and keep the given name")
    check(*(namespace[n] for n in names))


def run_exercise(exercise: str, namespace: dict) -> None:
    """Run every check of one exercise on the functions defined in ``namespace``
    (a notebook's ``globals()``). Raises like the checks do."""
    if exercise not in EXERCISES:
        raise KeyError(f"exercise={exercise!r} is not one of {list(EXERCISES)}")
    for check, names in EXERCISES[exercise].checks:
        run_check(check, names, namespace)
