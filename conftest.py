"""Settings for every test session, including the notebooks run under nbval.

The kernels that nbval starts inherit this process's environment, so these reach them.
"""
import os

# Interactive widgets become static figures wherever stored outputs are compared.
os.environ.setdefault("SA_COURSE_STATIC", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
