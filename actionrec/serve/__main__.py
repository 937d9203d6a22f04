"""`python -m actionrec.serve [options]`: the same as `actionrec serve`."""

import sys

from .cli import main

sys.exit(main())
