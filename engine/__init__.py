"""Tinct engine: AI colorization of black-and-white photos.

The engine owns everything that needs numpy or a network: the color pipeline,
the models, training, the socket server and the command line. The GIMP side
(`plugin/`) only talks to it.
"""

__version__ = "0.1.0"


class TinctError(Exception):
    """A problem the user can act on; the CLI prints it as one line, no traceback."""
