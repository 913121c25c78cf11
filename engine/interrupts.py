"""Ctrl+C, remembered.

Python turns Ctrl+C into a KeyboardInterrupt wherever the main thread happens to be. While
modules are still importing, that can be inside a weakref callback of the import system, and
Python drops an exception raised there ("Exception ignored in ..."). A command that then went
on to serve would ignore the user's Ctrl+C for good. So the handler also remembers the press,
and the long-running loops (`tinct ui`, `tinct serve`, the installer's page) end on it.
"""

import signal
import threading

_pressed = []


def _on_sigint(signum, frame):
    _pressed.append(signum)
    raise KeyboardInterrupt


def install():
    """Take over Python's own Ctrl+C handler (in the main thread; an ignored SIGINT stays ignored)."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def seen():
    """Whether Ctrl+C was pressed since install(), even if its KeyboardInterrupt got lost."""
    return bool(_pressed)
