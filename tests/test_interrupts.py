"""Ctrl+C ends Tinct's long-running loops even when Python loses its KeyboardInterrupt.

Python runs the Ctrl+C handler wherever the main thread is; inside a weakref callback (the
import system uses them for its module locks) the exception is printed and dropped. That made
`tinct ui` serve on after a Ctrl+C that landed while it was still importing. Each test runs in
a child Python, so the signal handling is that of a real process.
"""

import subprocess
import sys
import textwrap

from tests.helpers import ROOT

# A Ctrl+C delivered inside a weakref callback, as it happens during an import: Python drops it
LOST_CTRL_C = """
import os, signal, time, weakref
from engine import interrupts
signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal (a background job ignores it)
interrupts.install()
class Thing: pass
thing = Thing()
ref = weakref.ref(thing, lambda _: (os.kill(os.getpid(), signal.SIGINT), time.sleep(2)))
del thing
print("lost" if interrupts.seen() else "not delivered", flush=True)
"""


def child(body, timeout=30):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(LOST_CTRL_C + body)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_a_lost_ctrl_c_still_ends_the_page_server():
    proc = child("""
from engine.pageserver import PageHandler, PageServer
server = PageServer(PageHandler)
t0 = time.time()
server.serve_until_stopped()
print("ended after %.1f s" % (time.time() - t0))
""")
    assert proc.stdout.startswith("lost\n"), proc.stdout + proc.stderr
    assert "Exception ignored" in proc.stderr and "KeyboardInterrupt" in proc.stderr   # Python did drop it
    assert proc.stdout.splitlines()[1].startswith("ended after 0."), proc.stdout


def test_a_lost_ctrl_c_while_loading_exits_130_not_as_an_internal_error():
    """numpy turns a Ctrl+C during its import into an ImportError; the CLI still says interrupted."""
    proc = child("""
from engine import cli
def broken_parser():
    raise ImportError("numpy: PyCapsule_Import could not import module 'datetime'")
cli.build_parser = broken_parser
raise SystemExit(cli.main(["--version"]))
""")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.strip().endswith("tinct: interrupted")


def test_without_ctrl_c_errors_keep_their_messages():
    proc = subprocess.run([sys.executable, "-m", "engine", "colorize", "no-such-photo.png"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "tinct: error:" in proc.stderr, proc.stderr
