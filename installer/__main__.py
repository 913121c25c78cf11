"""`python -m installer` is `tinct-install`."""

import sys

from .cli import main

sys.exit(main())
