"""``python -m istd_kernels``: the ``istd`` command-line tool."""

import sys

from .cli.main import main

sys.exit(main())
