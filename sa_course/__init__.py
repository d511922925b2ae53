"""The course's tooling, around the NumPy reference in :mod:`sa_numpy`.

- :mod:`sa_course.checks`           the exercise checks: your functions against the reference
- :mod:`sa_course.grade`            the grader, ``python -m sa_course.grade``
- :mod:`sa_course.trace`            the tracer: the first intermediate where your layer differs
  (:mod:`~sa_course.trace_chain` traces your own sa_forward/sa_backward, :mod:`~sa_course.trace_rows`
  holds the rows and the report)
- :mod:`sa_course.viz`              the lessons' figures and tables
- :mod:`sa_course.plots`            figures that follow training runs (lesson 06's ``LivePlot``)
- :mod:`sa_course.explorer`         lesson 04's channel-routing explorer
- :mod:`sa_course.build_exercises`  writes ``exercises/`` and ``solutions/`` from ``course/exercises/``
- :mod:`sa_course.run_notebooks`    re-executes the lessons so their stored outputs are current
- :mod:`sa_course.lesson_data`      the outputs lessons 06-07 store for each data set they can find

Unlike :mod:`sa_numpy`, this package may import anything the course installs.
"""
