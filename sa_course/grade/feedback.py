"""Feedback a student can read: one page per student, in Markdown and in HTML.

Each page has, per exercise, its status, points, the grader's message with its hint and what to
do next, then the total and the one thing to do first. Names and messages are text wherever they
go: in Markdown every character that could start markup is escaped, in HTML everything is
``html.escape``d, and neither has a link, an image or a script of the student's. In ``--strict``
grading a page shows no reference value: an ``expected`` number in a message is hidden (shapes and
dtypes stay, they are the exercise's own).
"""
from __future__ import annotations

import html
import re

from .gradebook import Result
from .runner import clean

REFERENCE = re.compile(r"(expected )(-?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|nan|inf))")
MARKDOWN = re.compile(r"([\\`*_\[\]<>#!|~&$])")       # what can start markup inside a line
NEXT = {
    "pass": "Nothing to do: well done.",
    "fail": "Read the message and its hint, fix the function it names, and run the notebook's check cell "
            "again until it says Correct.",
    "not attempted": "Write the functions that still raise NotImplementedError, then run the check cell.",
    "error": "Your code stopped with an error: run the notebook top to bottom (Kernel > Restart Kernel and "
             "Run All Cells) and fix the first error it shows.",
    "timeout": "Your notebook ran longer than the time limit: look for an endless loop, or a loop over "
               "every element that NumPy can do at once.",
    "grader-error": "The grader failed on this notebook, not your code: your instructor grades it again.",
    "missing": "Hand in this exercise's notebook (exercises/{exercise}.ipynb with your code in it).",
}


def message(text: str, strict: bool) -> str:
    """The grader's message as the student sees it: no reference value in strict grading."""
    text = clean(text)
    return REFERENCE.sub(r"\1[hidden in strict grading]", text) if strict else text


def entries(res: Result, strict: bool) -> list[dict]:
    """Per exercise: title, status, points, message and what to do next."""
    out = []
    for exercise, checks in res.table.items():
        row = res.rows.get(exercise)
        status = row.status if row else "missing"
        out.append({"exercise": exercise, "status": status,
                    "points": f"{row.points}/{row.max_points}" if row else f"0/{sum(checks.values()):g}",
                    "notebook": getattr(res.student.counted.get(exercise), "shown", ""),
                    "message": message(row.message, strict) if row else "no notebook for this exercise",
                    "next": NEXT.get(status, NEXT["error"]).format(exercise=exercise)})
    return out


def first_step(res: Result, items: list[dict]) -> str:
    if res.student.skipped:
        return "Your folder was not graded: ask your instructor."
    todo = next((e for e in items if e["status"] != "pass"), None)
    return f"Start with {todo['exercise']}: {todo['next']}" if todo else "Every exercise passes: well done!"


def md(text: str) -> str:
    """Text that Markdown shows as it is: every character that could start markup escaped."""
    return MARKDOWN.sub(r"\\\1", text)


def markdown(res: Result, strict: bool, title: str = "Feedback") -> str:
    items = entries(res, strict)
    lines = [f"# {md(title)}: {md(res.student.shown)}", "",
             f"**Total: {res.total}/{res.max}** ({md(res.status)})", "", md(first_step(res, items)), ""]
    for e in items:
        lines += [f"## {md(e['exercise'])}: {md(e['status'])}, {md(e['points'])} points", ""]
        if e["notebook"]:
            lines += [f"Graded: {md(e['notebook'])}", ""]
        lines += ["    " + line for line in e["message"].splitlines() or [""]]     # a code block: no markup
        lines += ["", f"Next: {md(e['next'])}", ""]
    for path, why in res.student.not_graded:
        lines.append(f"- {md(path)}: {md(why)}")
    return "\n".join(lines).rstrip() + "\n"


STYLE = ("body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}"
         "pre{white-space:pre-wrap;background:#f4f4f4;padding:.6em}"
         ".pass{color:#176f2c}.fail,.error,.timeout,.missing,.not-attempted,.grader-error{color:#a4271a}")


def page(res: Result, strict: bool, title: str = "Feedback") -> str:
    """The same page in HTML; every text escaped."""
    esc = lambda text: html.escape(str(text), quote=True)       # noqa: E731
    items = entries(res, strict)
    body = [f"<h1>{esc(title)}: {esc(res.student.shown)}</h1>",
            f"<p><strong>Total: {esc(res.total)}/{esc(res.max)}</strong> ({esc(res.status)})</p>",
            f"<p>{esc(first_step(res, items))}</p>"]
    for e in items:
        body += [f"<h2>{esc(e['exercise'])}: <span class=\"{esc(e['status'].replace(' ', '-'))}\">"
                 f"{esc(e['status'])}</span>, {esc(e['points'])} points</h2>"]
        if e["notebook"]:
            body.append(f"<p>Graded: {esc(e['notebook'])}</p>")
        body += [f"<pre>{esc(e['message'])}</pre>", f"<p>Next: {esc(e['next'])}</p>"]
    if res.student.not_graded:
        body.append("<ul>" + "".join(f"<li>{esc(p)}: {esc(why)}</li>" for p, why in res.student.not_graded) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}: {esc(res.student.shown)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
