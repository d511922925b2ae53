"""A "your turn" check judges only the learner's latest run of the answer cell: in an IPython
shell, an answer cell that raised, or that has not run again since the last check, gets a line
saying so, never feedback on the older value its variable still holds."""
import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

from sa_course import your_turn

SETUP = """
import numpy as np
from sa_course import your_turn
rng = np.random.default_rng(2)
x0 = rng.normal(size=(6, 4, 5, 5))
cweight, cbias = rng.normal(size=4), rng.normal(size=4)
"""
CHECK = "your_turn.lesson02.pre_activation(my_z, x0, cweight, cbias)"
RIGHT = "my_z = cweight * x0.mean(axis=(2, 3)) + cbias"
BROADCAST_ERROR = "my_z = cweight * x0.mean(axis=(1, 2)) + cbias"     # (6, 5) against (4,): ValueError


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    your_turn.install(shell)
    shell.run_cell(SETUP, store_history=True)
    yield shell
    runs = shell._sa_course_answer_runs
    shell.events.unregister("pre_run_cell", runs.pre_run_cell)
    shell.events.unregister("post_run_cell", runs.post_run_cell)
    InteractiveShell.clear_instance()


def run(shell, capsys, code: str) -> str:
    """Run one cell; what it printed (for a check cell: its one line)."""
    capsys.readouterr()
    shell.run_cell(code, store_history=True)
    return capsys.readouterr().out.strip()


def test_an_answer_cell_that_raised_is_named_not_its_older_value_judged(shell, capsys):
    run(shell, capsys, "my_z = cweight * x0.sum(axis=(2, 3)) + cbias")
    assert "divide by P" in run(shell, capsys, CHECK)
    run(shell, capsys, BROADCAST_ERROR)
    line = run(shell, capsys, CHECK)
    assert "stopped with ValueError: operands could not be broadcast" in line and "my_z" in line
    assert "divide by P" not in line and "Not yet" not in line
    run(shell, capsys, RIGHT)
    assert run(shell, capsys, CHECK).startswith("Correct (vectorised z)")


def test_a_syntax_error_in_the_answer_cell_is_named(shell, capsys):
    run(shell, capsys, RIGHT)
    run(shell, capsys, "my_z = cweight * x0.mean(axis=(2, 3) + cbias")
    assert "stopped with SyntaxError" in run(shell, capsys, CHECK)


def test_an_answer_not_run_again_since_the_last_check_is_not_judged_again(shell, capsys):
    run(shell, capsys, "my_z = cweight * x0.mean(axis=(2, 3))")
    assert "cbias is missing" in run(shell, capsys, CHECK)
    line = run(shell, capsys, CHECK)
    assert "has not run since the last check" in line and "cbias" not in line
    run(shell, capsys, "1 + 1")                         # another cell in between changes nothing
    assert "has not run since the last check" in run(shell, capsys, CHECK)
    run(shell, capsys, RIGHT)
    assert run(shell, capsys, CHECK).startswith("Correct")


def test_the_placeholder_says_not_tried_yet_every_time(shell, capsys):
    run(shell, capsys, "my_z = ...   # your turn")
    assert "not tried yet" in run(shell, capsys, CHECK)
    assert "not tried yet" in run(shell, capsys, CHECK)


def test_an_answer_and_its_check_in_one_cell_are_judged_on_every_run(shell, capsys):
    for _ in range(2):
        assert run(shell, capsys, RIGHT + "\n" + CHECK).startswith("Correct")


def test_a_check_called_outside_a_cell_judges_the_value(shell, capsys):
    run(shell, capsys, BROADCAST_ERROR)
    ns = shell.user_ns
    your_turn.lesson02.pre_activation(ns["cweight"] * ns["x0"].mean(axis=(2, 3)) + ns["cbias"],
                                      ns["x0"], ns["cweight"], ns["cbias"])
    assert capsys.readouterr().out.startswith("Correct")


def test_a_new_cell_that_binds_the_answer_counts_as_the_latest_run(shell, capsys):
    run(shell, capsys, BROADCAST_ERROR)
    run(shell, capsys, "z_mine = cweight * x0.mean(axis=(2, 3)) + cbias\nmy_z = z_mine")
    assert run(shell, capsys, CHECK).startswith("Correct")


@pytest.mark.parametrize("answer, check", [
    ("my_shape = (8, 4, 5, 5)", "your_turn.lesson01.half_shape(my_shape)"),
    ("my_destination = (1, 3, 1)", "your_turn.lesson01.channel_destination(my_destination)"),
    ("my_shape = (8, 8, 1, 1)", "your_turn.lesson02.pooled_shape(my_shape)"),
    ("my_shape = (2, 4, 18)", "your_turn.lesson03.grouped_shape(my_shape)"),
    ("my_order = [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]", "your_turn.lesson04.read_out_order(my_order)"),
    ("my_groups = 4", "your_turn.lesson04.inverse_groups(my_groups)"),
])
def test_every_task_follows_its_own_answer_name(shell, capsys, answer, check):
    run(shell, capsys, answer)
    assert run(shell, capsys, check).startswith("Correct")
    assert "has not run since the last check" in run(shell, capsys, check)
    run(shell, capsys, answer.split("=")[0] + "= 1 / 0")
    assert "stopped with ZeroDivisionError" in run(shell, capsys, check)


def test_installing_again_replaces_the_earlier_follower(shell):
    before = len(shell.events.callbacks["post_run_cell"])
    runs = your_turn.install(shell)
    assert len(shell.events.callbacks["post_run_cell"]) == before
    assert shell._sa_course_answer_runs is runs


def test_importing_the_module_in_a_new_kernel_starts_following_answers():
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\n"
            "shell.run_cell('from sa_course import your_turn')\n"
            "shell.run_cell('my_z = 1 / 0')\n"
            "print(shell._sa_course_answer_runs.runs['my_z'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("(2, 'ZeroDivisionError: division by zero')")
