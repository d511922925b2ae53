"""``python -m sa_torch.train``: see :mod:`sa_torch.train.cli`."""
import sys

from .cli import main

sys.exit(main())
