"""`tinct`: the engine's command line.

Each subcommand lives with the code it drives and registers itself here through
a `register(subparsers)` function, so this file only routes and turns errors into
one-line messages (exit status 2 for bad input, 1 for anything unexpected).
"""

import argparse
import importlib
import os
import sys

from . import TinctError, __version__, interrupts

# Modules that add subcommands, in the order `tinct --help` lists them.
COMMAND_MODULES = (
    "engine.commands",
    "engine.suggest",
    "engine.ui.commands",
    "engine.evaluate",
    "engine.evaluate_restore",
    "engine.detect_damage",
    "engine.evaluate_damage",
    "engine.contact_sheet",
    "engine.train.commands",
    "engine.train.damage",
    "engine.server.commands",
)

DESCRIPTION = """\
Tinct colorizes black-and-white photos with a small neural network that runs on
your CPU (or GPU). It keeps each photo's own lightness and only adds color, so
detail is never lost. Paint a few colored dots in a hint image to steer it,
give a color reference photo to borrow its palette, or paint over scratches and
tears in a damage mask to have them filled first.

Quick start:
  tinct colorize grandma.jpg                 writes grandma_color.png beside it
  tinct colorize grandma.jpg --hints dots.png
  tinct colorize grandma.jpg --damage scratches.png
  tinct batch scans/ colored/                every photo in scans/
  tinct eval ../shared/val --limit 20        measure quality (PSNR)
"""


def build_parser():
    parser = argparse.ArgumentParser(prog="tinct", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="tinct %s" % __version__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # an optional part that is not present in this installation
            raise
        module.register(sub)
    return parser


def main(argv=None):
    interrupts.install()
    try:
        return _run(argv)
    except BaseException as exc:
        # Ctrl+C; while modules load it can also surface as another error (numpy reports a failed import)
        if not (isinstance(exc, KeyboardInterrupt) or interrupts.seen()):
            raise
        print("tinct: interrupted", file=sys.stderr)
        return 130


def _run(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("TINCT_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except TinctError as exc:
        if debug:
            raise
        print("tinct: error: %s" % exc, file=sys.stderr)
        return 2
    except Exception as exc:
        if debug or interrupts.seen():
            raise
        print("tinct: internal error: %s: %s (run with --debug for details)" % (type(exc).__name__, exc),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
