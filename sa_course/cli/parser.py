"""The course's command lines' argparse: each error on one line, the problem and where the help is.

``sa-course`` and ``python -m sa_course.grade`` both use it, so that bad input to any of them is
one line naming the value and the fix, with exit status 2. Standard library only: ``sa-course``
must start where the grader's Unix-only modules do not import.
"""
import argparse

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, with each error on one line: the problem, then where the help is."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")
