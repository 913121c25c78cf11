import sys

from . import interrupts

interrupts.install()   # before the command modules load (see engine/interrupts.py)

from .cli import main  # noqa: E402

sys.exit(main())
