"""Every measured figure the README and the docs pages state is one that a results file holds.

docs/results/ is the one home of every measured number, each with the command, machine and date
that made it; the README and docs/*.md link to it or quote it. This test reads the README and
docs/*.md (not docs/results/ itself) for four kinds of figure and names each one that no file under
docs/results/ holds:

- a ratio, ``0.91x`` (recorded ones end in x too);
- a time, ``45 s``, ``1 min 58 s``, ``14 min``, and both ends of ``12 to 16 min``;
- a percentage, ``88.63%``;
- a mean ± spread, ``88.63 ± 0.17``.

A stated figure matches a recorded one of its kind when the recorded one, rounded to the stated
precision, gives it: ``0.91x`` is the recorded ``0.906x`` to two decimals, ``14 min`` the recorded
``14 min 0 s`` to the minute. In results tables, a column headed with its unit (``step (ms)``,
``test acc (%)``) gives its numbers that unit.

The last tests hold the README to what a newcomer needs: at most a thousand words, a link to every
docs page, and links (in every page) that lead to a file and a heading.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULT_FILES = sorted(p for p in RESULTS.rglob("*") if p.suffix in {".md", ".json", ".csv", ".txt", ".log"})

#: Figures that are rules, not measurements: (page, the figure as written, why it is not measured).
NOT_MEASURED = [
    ("docs/developing.md", "20 minutes", "the time the whole suite must stay under: a rule for contributors"),
]
#: The README's course map gives estimates that ``python -m sa_course.time_estimates`` computes from
#: the notebooks (tests/test_time_estimates.py holds the README to lesson 00): not measurements.
ESTIMATES = re.compile(r"^## Course map$.*?(?=^## )", re.M | re.S)

NUMBER = r"(?<![\w.])\d+(?:\.\d+)?"
SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
           "h": 3600, "hour": 3600, "hours": 3600}
UNIT = r"(?:ms|sec|seconds?|s|min|minutes?|hours?|h)\b"
TIME = re.compile(rf"({NUMBER})\s?({UNIT})")
RANGE = re.compile(rf"({NUMBER})\s*(?:-|–|to)\s*(?=\d+(?:\.\d+)?\s?(x(?!\w)|%|{UNIT}))")
RATIO = re.compile(rf"({NUMBER})x(?!\w)")
PERCENT = re.compile(rf"({NUMBER})\s?%")
PLUS_MINUS = re.compile(rf"({NUMBER})\s?±\s?(\d+(?:\.\d+)?)")
HEADER_UNIT = re.compile(r"\((ms|s|min|%)\)")


@dataclass(frozen=True)
class Figure:
    kind: str              # ratio, time, percent, plus-minus
    values: tuple          # a time in seconds
    precision: tuple       # per value: half a unit of its last written digit, how far a recorded value may be
    text: str


def half_digit(number: str, scale: float = 1.0) -> float:
    return 0.5 * scale * 10 ** -len(number.partition(".")[2])


def one(kind: str, number: str, scale: float = 1.0, text: str | None = None) -> Figure:
    return Figure(kind, (float(number) * scale,), (half_digit(number, scale),), text or number)


def figures(text: str) -> list[Figure]:
    """Every ratio, time, percentage and mean ± spread in text, ranges read as both ends."""
    found = [Figure("plus-minus", (float(a), float(b)), (half_digit(a), half_digit(b)), m[0])
             for m in PLUS_MINUS.finditer(text) for a, b in [m.groups()]]
    text = PLUS_MINUS.sub(" ", text)
    text = RANGE.sub(lambda m: f"{m[1]}{'' if m[2] in ('x', '%') else ' '}{m[2]} and ", text)
    found += [one("ratio", m[1], text=m[0]) for m in RATIO.finditer(text)]
    found += [one("percent", m[1], text=m[0]) for m in PERCENT.finditer(text)]
    return found + times(text)


def times(text: str) -> list[Figure]:
    """Times, with ``1 min 58 s`` (larger unit first, nothing but space between) read as one."""
    merged: list[dict] = []
    for m in TIME.finditer(text):
        scale = SECONDS[m[2]]
        last = merged[-1] if merged else None
        if last and not text[last["end"]:m.start()].strip() and scale < last["scale"]:
            last.update(end=m.end(), seconds=last["seconds"] + float(m[1]) * scale, scale=scale,
                        precision=half_digit(m[1], scale), text=text[last["start"]:m.end()])
        else:
            merged.append(dict(start=m.start(), end=m.end(), seconds=float(m[1]) * scale, scale=scale,
                               precision=half_digit(m[1], scale), text=m[0]))
    return [Figure("time", (t["seconds"],), (t["precision"],), t["text"]) for t in merged]


def table_figures(text: str) -> list[Figure]:
    """The numbers of results tables whose column header names a unit: ``step (ms)``, ``test acc (%)``."""
    found, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        for head, cell in zip(header, cells):
            unit = HEADER_UNIT.search(head)
            for number in re.findall(NUMBER, PLUS_MINUS.sub(lambda m: m[1], cell)) if unit else []:
                found.append(one("percent", number) if unit[1] == "%" else one("time", number, SECONDS[unit[1]]))
    return found


def recorded() -> dict[str, list[tuple]]:
    """Every figure the results files hold, by kind."""
    pool: dict[str, list[tuple]] = {"ratio": [], "time": [], "percent": [], "plus-minus": []}
    for path in RESULT_FILES:
        text = path.read_text(errors="replace")
        for figure in figures(text) + table_figures(text):
            pool[figure.kind].append(figure.values)
    return pool


RECORDED = recorded()


def holds(figure: Figure, pool: dict[str, list[tuple]]) -> bool:
    """Whether a recorded figure of the same kind, rounded as the stated one is, gives it."""
    return any(len(values) == len(figure.values) and
               all(abs(r - s) <= p * (1 + 1e-9) + 1e-12 for r, s, p in zip(values, figure.values, figure.precision))
               for values in pool[figure.kind])


def unrecorded(page: str, text: str, pool=RECORDED) -> list[str]:
    """The figures stated in text that no results file holds (the allowed ones left out)."""
    if page == "README.md":
        text = ESTIMATES.sub("", text)
    allowed = {written for name, written, _why in NOT_MEASURED if name == page}
    return [f.text for f in figures(text) if f.text not in allowed and not holds(f, pool)]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", PAGES, ids=relative)
def test_every_figure_a_page_states_is_in_a_results_file(path):
    missing = unrecorded(relative(path), path.read_text())
    assert not missing, (f"{relative(path)} states {missing}, which no file under docs/results/ holds: "
                         f"record the run there (with its command) and link to it, or correct the figure")


def test_the_results_files_are_read_for_every_kind_of_figure():
    """Figures written in the results pages' own words: a ratio, a compound time, a table's unit, a ± pair."""
    for kind, values in [("ratio", (0.921,)), ("time", (118.0,)), ("time", (0.2184,)), ("percent", (88.79,)),
                         ("plus-minus", (88.63, 0.17))]:
        assert any(all(abs(r - v) < 1e-9 for r, v in zip(rec, values)) for rec in RECORDED[kind]), (kind, values)


@pytest.mark.parametrize("planted, reported", [
    ("0.123x", ["0.123x"]), ("3 min 17 s", ["3 min 17 s"]), ("77.77%", ["77.77%"]),
    ("12.34 ± 5.67", ["12.34 ± 5.67"]), ("917 to 923 ms", ["917 ms", "923 ms"]),
])
def test_a_planted_unrecorded_figure_is_caught(planted, reported):
    text = (ROOT / "README.md").read_text() + f"\nIn our runs it took {planted}.\n"
    assert unrecorded("README.md", text) == reported


def test_a_recorded_figure_rounded_to_fewer_digits_passes():
    text = "SA ran at 0.91x and 0.9x plain; the suite took 14 min; 88.6%; 88.63 ± 0.17; 1.7 to 1.9 min."
    assert unrecorded("docs/example.md", text) == []


def test_the_allowed_figures_are_still_written_where_they_are_allowed():
    for page, written, _why in NOT_MEASURED:
        assert written in (ROOT / page).read_text(), f"{page} no longer says {written!r}: remove it from NOT_MEASURED"


# The README as a newcomer meets it: short, and a way to every docs page.

README_MAX_WORDS = 1000
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def test_the_readme_is_at_most_a_thousand_words():
    words = len((ROOT / "README.md").read_text().split())
    assert words <= README_MAX_WORDS, f"README.md has {words} words, over {README_MAX_WORDS}: move detail to docs/"


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target).resolve() for target, _anchor in LINK.findall((ROOT / "README.md").read_text())}
    assert [relative(p) for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize("path", PAGES, ids=relative)
def test_the_relative_links_of_a_page_lead_to_files_and_headings(path):
    links = [(path.parent / target if target else path, anchor)
             for target, anchor in LINK.findall(path.read_text()) if "://" not in target]
    assert [str(t) for t, _ in links if not t.exists()] == [], f"{relative(path)}: links to missing files"
    assert [f"{t.name}#{a}" for t, a in links if a and t.suffix == ".md" and a not in anchors(t)] == [], \
        f"{relative(path)}: links to missing headings"


def test_the_anchors_are_the_ones_github_makes():
    assert {"colab-and-kaggle", "windows-macos-and-pip", "data-for-lessons-06-and-07"} <= anchors(ROOT / "docs/learners.md")
    assert "--strict" in anchors(ROOT / "docs/instructors.md")      # from the heading "## `--strict`"
