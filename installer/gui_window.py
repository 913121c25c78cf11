"""`tinct-install --gui` and `--serve-gui`: the installer page in a pywebview window, or in a
web browser through gui_server.py, or (no display at all) the command line with a message.
"""

import os
import sys

from engine.pageserver import no_display_reason

from . import actions
from .gui_api import GuiApi
from .gui_server import GUI_DIR, GuiServer


def _options(args):
    from .cli import explicit_profiles, resolve_python

    profiles = explicit_profiles(args)
    python = resolve_python(args.engine_python) if args.engine_python else None
    return actions.Options(profiles=profiles, engine_python=python, start_engine=not args.no_start,
                           explicit=profiles is not None)


def serve(args, open_browser=False):
    server = GuiServer(GuiApi(_options(args)), args.port)
    print("Tinct installer page: %s" % server.url)
    print("Open it in a web browser on this computer; press Ctrl+C here when you are done.")
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    server.serve_until_stopped()
    return 0


def run(args):
    """The exit status, or None when the caller should go on with the command line."""
    if args.serve_gui:
        return serve(args)
    reason = no_display_reason()
    if reason:
        print("tinct-install: %s, so the installer window cannot open; running the command-line "
              "installer instead." % reason, file=sys.stderr)
        return None
    try:
        import webview
    except ImportError:
        print("tinct-install: pywebview is not installed (pip install 'tinct[gui]'); opening the installer "
              "in your web browser instead.", file=sys.stderr)
        return serve(args, open_browser=True)
    api = GuiApi(_options(args))
    webview.create_window("Install Tinct into GIMP", url=os.path.join(GUI_DIR, "index.html"), js_api=api,
                          width=760, height=640, min_size=(560, 480))
    webview.start()
    return 0
