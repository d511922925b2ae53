"""``python -m sa_course.grade``: see :mod:`sa_course.grade.cli`."""
import sys

from .cli import main

sys.exit(main())
