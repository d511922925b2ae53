"""``python -m sa_course``: the same as the ``sa-course`` command (see :mod:`sa_course.cli`)."""
import sys

from sa_course.cli import main

sys.exit(main())
