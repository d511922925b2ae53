"""The "your turn" checks of lessons 03 and 04: "not tried yet" for the placeholder, praise for the
right answer, the matching lesson for each known mistake, never the answer for anything else; and
the lessons store them untried, each followed by a folded worked answer."""
from pathlib import Path

import nbformat
import numpy as np
import pytest

from sa_course.explorer import channel_routing
from sa_course.your_turn import lesson03, lesson04

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 8, 3, 3))
ROWS = X.reshape(2, 4, -1)
G_ROWS = RNG.normal(size=ROWS.shape)
XHAT = (ROWS - ROWS.mean(-1, keepdims=True)) / ROWS.std(-1, keepdims=True)
R = 1 / ROWS.std(-1, keepdims=True)
MEAN = lambda a: a.mean(-1, keepdims=True)
ROUTE = channel_routing(12, 3)


def scatter(values, index):
    out = np.empty_like(values)
    out[index] = values
    return out


# task, its right answer, known mistakes (value, words of the expected hint)
TASKS = {
    "grouped_shape": (lambda v: lesson03.grouped_shape(v), (2, 4, 18), [
        ((2, 4, 2, 3, 3), "merges everything after the group axis"),
        ((2, 4, 9), "m counts every number of a group"),
        ((8, 18), "never mixes samples"),
    ]),
    "group_variance": (lambda v: lesson03.group_variance(v, X, 4), ROWS.var(-1), [
        (ROWS.var(-1, keepdims=True), "keepdims"),
        (ROWS.var(-1, ddof=1), "m - 1"),
        (ROWS.std(-1), "standard deviation"),
        (X.var(axis=(2, 3)), "per channel"),
        (ROWS.mean(-1), "each row's mean"),
    ]),
    "variance_term": (lambda v: lesson03.variance_term(v, G_ROWS, XHAT, R),
                      R * (G_ROWS - MEAN(G_ROWS) - XHAT * MEAN(G_ROWS * XHAT)), [
        (R * (G_ROWS - MEAN(G_ROWS)), "v held constant"),
        (R * (G_ROWS - MEAN(G_ROWS) + XHAT * MEAN(G_ROWS * XHAT)), "the sign"),
        (R * (G_ROWS - MEAN(G_ROWS)) - XHAT * MEAN(G_ROWS * XHAT), "scaled by r"),
        (R * (G_ROWS - MEAN(G_ROWS) - XHAT * (G_ROWS * XHAT).sum(-1, keepdims=True)), "a sum instead of a mean"),
        (R * (G_ROWS - MEAN(G_ROWS) - XHAT * MEAN(XHAT * XHAT)), "g weights each xhat"),   # upstream g forgotten
        (R * (G_ROWS - XHAT * MEAN(G_ROWS * XHAT)), "the mean term is gone"),
    ]),
    "read_out_order": (lambda v: lesson04.read_out_order(v), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11], [
        (list(range(12)), "column by column"),
        ([0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11], "GOES to"),
        ([1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12], "numbered from 0"),
    ]),
    "inverse_groups": (lambda v: lesson04.inverse_groups(v), 4, [
        (2, "does not undo"),
        (8, "identity"),
    ]),
    "source_groups": (lambda v: lesson04.source_groups(v), scatter(ROUTE.group, ROUTE.destination), [
        (ROUTE.group, "INPUT channel"),
        (ROUTE.group[ROUTE.destination], "scatter"),
        (ROUTE.destination, "where each channel GOES"),
        (scatter(ROUTE.branch, ROUTE.destination), "the branch (0 or 1) instead of the group"),
    ]),
}


@pytest.mark.parametrize("task", TASKS)
def test_the_placeholder_says_not_tried_yet(task, capsys):
    TASKS[task][0](...)
    assert "not tried yet" in capsys.readouterr().out


@pytest.mark.parametrize("task", TASKS)
def test_the_right_answer_is_praised(task, capsys):
    run, right, _ = TASKS[task]
    run(right)
    assert capsys.readouterr().out.startswith("Correct")


@pytest.mark.parametrize("task, value, words", [(t, v, w) for t, (_, _, ms) in TASKS.items() for v, w in ms],
                         ids=lambda p: p if isinstance(p, str) else "")
def test_a_known_mistake_gets_its_lesson(task, value, words, capsys):
    TASKS[task][0](value)
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


@pytest.mark.parametrize("task", TASKS)
def test_an_unknown_wrong_value_says_what_differs_without_the_answer(task, capsys):
    run, right, _ = TASKS[task]
    wrong = (np.asarray(right) + 7).tolist() if not isinstance(right, np.ndarray) else right + 7.0
    wrong = tuple(wrong) if isinstance(right, tuple) else wrong
    run(wrong)
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and "worked answer" in out
    assert str(right) not in out


LESSONS = {"03_spatial_attention_groupnorm": "your_turn.lesson03.", "04_channel_shuffle": "your_turn.lesson04."}


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_lesson_stores_its_your_turn_cells_untried_with_a_folded_worked_answer(lesson):
    cells = nbformat.read(ROOT / "notebooks" / f"{lesson}.ipynb", as_version=4).cells
    checks = [i for i, c in enumerate(cells) if c.cell_type == "code" and LESSONS[lesson] in c.source]
    assert len(checks) >= 2
    for i in checks:
        assert cells[i - 1].cell_type == "code" and "= ..." in cells[i - 1].source
        printed = "".join(o.get("text", "") for o in cells[i].outputs)
        assert "not tried yet" in printed
        assert cells[i + 1].cell_type == "markdown"
        assert cells[i + 1].source.lstrip().startswith("<details><summary>Worked answer</summary>")
