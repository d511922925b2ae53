"""Names as text: a student's folder or file name, shown the same way wherever it goes.

A name is what ``os.listdir`` gives: bytes that are not UTF-8 come back as lone surrogates
(Python's surrogateescape), so every name the file system can hold is a ``str`` here.

- :func:`shown` writes a name as printable text that is never the same for two names:
  undecodable bytes as ``\\x80``, control characters (C0, DEL, C1), bidi overrides, zero-width
  and other invisible characters, other spaces than the plain one, and a plain space at either end
  as ``\\x1b``, ``\\u202e``... and a backslash as ``\\\\``. A newline in a file name cannot
  start a row of the table, and ``ada`` and ``ada<zero-width space>`` stay two names.
- :func:`lookalike` is what two shown names are compared by to flag names that a reader (or a
  case-insensitive file system) would take for one: Unicode compatibility forms and case folded.
- :func:`csv_cell` keeps a spreadsheet from running a cell as a formula; it is one-to-one too.
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata

INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}          # controls, formats, surrogates, unassigned
FORMULA = "=+-@\uff1d\uff0b\uff0d\uff20"                         # and their fullwidth forms
SKIPPED = " \t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f" \
          "\u3000\u200b\u200c\u200d\u2060\ufeff"                  # what a spreadsheet may skip before a formula
MAX_FILE_NAME = 120


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:                    # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _visible(ch: str) -> bool:
    kind = unicodedata.category(ch)
    return kind not in INVISIBLE and (kind != "Zs" or ch == " ")


def shown(name: str) -> str:
    """``name`` as printable text, one-to-one: invisible characters and undecodable bytes escaped."""
    name = str(name)
    out = []
    for i, ch in enumerate(name):
        if ch == "\\":
            out.append("\\\\")
        elif not _visible(ch) or (ch == " " and (i == 0 or i == len(name) - 1)):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def lookalike(name: str) -> str:
    """The key two names are compared by: names with the same key read as one name."""
    return unicodedata.normalize("NFKC", shown(name)).casefold()


def lookalikes(names) -> dict[str, list[str]]:
    """For each name that reads like another, the others it reads like (names as given)."""
    groups = {}
    for name in names:
        groups.setdefault(lookalike(name), []).append(name)
    return {n: [m for m in group if m != n] for group in groups.values() if len(group) > 1 for n in group}


def csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as the text it is: one that would start a formula (=, +, -, @,
    their fullwidth forms, also after leading spaces, no-break or zero-width spaces; a tab or a
    carriage return) or that starts with ``'`` gets a ``'`` in front, so no two texts give one cell."""
    text = str(text)
    risky = text[:1] in ("'", "\t", "\r", "\n") or text.lstrip(SKIPPED)[:1] in tuple(FORMULA)
    return "'" + text if risky else text


def printable(text: str) -> str:
    """Text that can be written as UTF-8 whatever it came from: a lone surrogate (from a file name or
    from what a kernel sent) as ``\\udc80``."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str) -> str:
    """Text for one cell of a table: runs of whitespace, newlines included, as one space."""
    return re.sub(r"\s+", " ", str(text)).strip()


def file_name(name: str, others_alike: bool = False) -> str:
    """A file name for a student's report or feedback page: their shown name, with a short hash of the
    folder's bytes where it would be too long or where another name reads like it (on a
    case-insensitive file system ``Ada.json`` and ``ada.json`` are one file)."""
    text = shown(name)
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    if others_alike or len(text.encode()) > MAX_FILE_NAME:
        text = f"{text[:MAX_FILE_NAME // 4]}-{digest}"
    return text
