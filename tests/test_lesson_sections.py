"""Every section of every lesson runs after a restart with the cells it names at its top
(``*Needs: the top cells and section 1.*``), and no cell rebinds a name that an earlier cell reads,
so that after Run All any section, or any cell, can be run again.

The names are read from the code (sa_course.cell_names); then each section runs in a fresh
namespace after the top cells and the sections it names. Lessons 06 and 07 run on the stand-in
data. Two sections are left to nbval, which runs them in order: lesson 06's section 3 trains two
networks (about a minute) and lesson 07's section 4 masks every group of three layers (about a
minute); their declarations are still checked against the names they read.
"""
import pytest

from lesson_cells import LESSONS, LessonShell, read_lesson, your_turns
from sa_course import lesson_data
from sa_course.cell_names import KERNEL_NAMES, NameFlow

SLOW = {("06_sa_resnet_cifar", "3"), ("07_seeing_attention", "4")}
THROWAWAY = {"_"}


def code_of(lesson):
    """Each code cell's source, an answer cell with its worked answer in (what it reads then)."""
    code = {i: lesson.source(i) for i in lesson.top + [i for s in lesson.sections for i in s.cells]}
    for turn in your_turns(lesson):
        code[turn.answer] = turn.worked
    return code


def flow(sources) -> NameFlow:
    names = NameFlow()
    for source in sources:
        names.run(source)
    return names


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_section_with_code_says_what_it_needs(path):
    lesson = read_lesson(path)
    numbers = [s.number for s in lesson.sections if s.number is not None]
    for section in lesson.sections:
        if not section.cells:
            continue
        where = f"{lesson.name}, section {section.number or section.title!r}"
        assert section.number is not None and section.needs is not None, f"{where}: no '*Needs: ...*' under its title"
        earlier = numbers[:numbers.index(section.number)]
        assert set(section.needs) <= set(earlier), f"{where} needs {section.needs}, not all of them earlier"
        for needed in section.needs:
            missing = set(lesson.section(needed).needs) - set(section.needs)
            assert not missing, f"{where} needs section {needed}, which needs {sorted(missing)}: name those too"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_no_cell_rebinds_a_name_that_an_earlier_cell_reads(path):
    lesson = read_lesson(path)
    cells = sorted(code_of(lesson).items())
    reads_and_binds = [(i, flow([source])) for i, source in cells]
    problems = [f"cell {j} rebinds {sorted(names)}, which cell {i} reads"
                for n, (i, earlier) in enumerate(reads_and_binds) for j, later in reads_and_binds[n + 1:]
                if (names := (earlier.inputs & later.bound) - THROWAWAY)]
    assert problems == [], f"{lesson.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_the_sections_named_bind_every_name_a_section_reads_from_elsewhere(path):
    lesson = read_lesson(path)
    code = code_of(lesson)
    top = flow(code[i] for i in lesson.top).bound
    for section in lesson.sections:
        if not section.cells:
            continue
        reads = flow(code[i] for i in section.cells).inputs - top - KERNEL_NAMES
        given = set().union(*(flow(code[i] for i in lesson.section(n).cells).bound for n in section.needs))
        assert reads <= given, (f"{lesson.name}, section {section.number} reads {sorted(reads - given)}, "
                                f"which neither the top cells nor sections {section.needs} bind")


SECTIONS = [(path, section.number) for path in LESSONS for section in read_lesson(path).sections
            if section.cells and (path.stem, section.number) not in SLOW]


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    hidden = lesson_data.hidden_data_env(tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in hidden.items():
            patch.setenv(name, value)                  # lessons 06 and 07 on the stand-in data
        shell = LessonShell()
        yield shell
        shell.close()


@pytest.mark.parametrize("path, number", SECTIONS, ids=lambda p: getattr(p, "stem", p))
def test_each_section_runs_after_a_restart_with_the_cells_it_needs(shell, path, number):
    lesson = read_lesson(path)
    section = lesson.section(number)
    shell.restart()
    for index in lesson.top + [i for n in section.needs for i in lesson.section(n).cells] + section.cells:
        shell.run(lesson.source(index))
