"""`tinct ui`: the interactive colorization window.

Click the photo to place a color point, drag it to move it, pick its color or one of the
colors the network finds likely there, and the whole photo follows in a fraction of a
second. Save writes the full-resolution result and the hints PNG that
`tinct colorize --hints` reads back. The work runs in the Tinct engine (`tinct serve`),
which is started when none is running.
"""

import argparse
import os
import sys

from .. import TinctError

EPILOG = """\
examples:
  tinct ui photo.jpg                         a window; Save writes photo_color.png and photo_hints.png
  tinct ui photo.jpg --hints dots.png        go on from dots painted before (Save updates dots.png)
  tinct ui photo.jpg --reference color.jpg -o out.png
  tinct ui --serve photo.jpg                 no window: prints an address to open in a web browser

in the window:
  click             place a point in the picker's color; the panel then shows the colors the
                    network finds likely there: one click uses one
  drag a point      move it;  right-click or Delete: remove the selected point
  wheel / drag      zoom / pan;  0 fits the photo;  B (hold) shows the photo before
  Ctrl+Z, Ctrl+Y    undo, redo;  Ctrl+S save

--serve listens on 127.0.0.1 only; the address carries a random key and nothing answers
without it. The photo stays in this process's memory; nothing is fetched from the web.
"""


def register(sub):
    p = sub.add_parser("ui", help="colorize interactively: place color points and see the photo change at once",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__, epilog=EPILOG)
    p.add_argument("photo", help="the black-and-white photo")
    p.add_argument("--hints", metavar="H.png", help="start from the points of this hints PNG; Save writes it back "
                   "(default: PHOTO_hints.png beside the photo)")
    p.add_argument("--reference", metavar="R", help="a color photo whose palette steers the colors")
    p.add_argument("-o", "--output", metavar="OUT.png", help="where Save writes the colorized photo "
                   "(default: PHOTO_color.png)")
    p.add_argument("--size", type=int, default=256, help="working resolution of the previews and the result "
                   "(default %(default)s)")
    p.add_argument("--serve", action="store_true", help="no window: serve the page for a web browser and print "
                   "its address")
    p.add_argument("--port", type=int, default=0, help="with --serve: the port on 127.0.0.1 (default: any free one)")
    p.add_argument("--apply-to", metavar="RESULT.json", help="for a program that opens the window (GIMP's "
                   "Interactive…): Apply and Cancel replace Save; Apply writes the points to this file and "
                   "closes the window, Cancel closes it and writes nothing")
    p.add_argument("--apply-points", metavar="POINTS.json", help="with --apply-to, for scripts: apply these points "
                   "([{\"x\", \"y\", \"rgb\": [r, g, b]}, ...]) at once, without showing the window")
    p.set_defaults(func=run)


def load_session(args):
    """The EditSession for the command's files; TinctError (exit 2) for a missing or unreadable one."""
    from ..commands import default_output, load_hints, load_reference
    from ..imageio import load_image
    from ..server.commands import make_client
    from .points import points_from_hints
    from .session import EditSession

    photo = load_image(args.photo, "photo")
    stem = os.path.splitext(args.photo)[0]
    hints_path = args.hints or stem + "_hints.png"
    points = []
    if args.hints and os.path.exists(args.hints):
        points = points_from_hints(load_hints(args.hints, photo, args.photo))
    return EditSession(photo, args.photo, args.output or default_output(args.photo), hints_path, points,
                       load_reference(args.reference), args.size,
                       new_client=lambda autostart: make_client(autostart=autostart), apply_to=args.apply_to)


def apply_points(session, path):
    """--apply-points: what the window's Apply does, with points from a file."""
    import json

    from .points import check_points

    try:
        with open(path) as fh:
            points = check_points(json.load(fh), session.width, session.height)
    except (OSError, ValueError) as exc:
        raise TinctError("%s: %s" % (path, exc))
    session.apply(points, 1.0)
    print("applied %d point%s to %s" % (len(points), "" if len(points) == 1 else "s", session.apply_to))
    return 0


def _in_thread(fn):
    import threading

    return lambda: threading.Thread(target=fn, daemon=True).start()


def serve(server, message):
    print(message % server.url)
    sys.stdout.flush()
    server.serve_until_stopped()
    return 0


def run(args):
    from ..pageserver import no_display_reason
    from .server import UiServer

    if args.size < 16:
        raise TinctError("--size must be at least 16")
    if args.apply_points and not args.apply_to:
        raise TinctError("--apply-points needs --apply-to (the file to write)")
    session = load_session(args)
    if args.apply_points:
        return apply_points(session, args.apply_points)
    server = UiServer(session, args.port if args.serve else 0)
    session.watch.start()
    server.on_done = _in_thread(server.httpd.shutdown)
    if args.serve:
        return serve(server, "Tinct: open %s in a web browser on this computer; Ctrl+C here ends it.")
    reason = no_display_reason()
    try:
        import webview
    except ImportError:
        reason = reason or "pywebview is not installed (pip install 'tinct[gui]')"
        webview = None
    if reason:
        return serve(server, "Tinct: " + reason + ", so no window; open %s in a web browser instead.")
    server.start()
    window = webview.create_window("Tinct — %s" % os.path.basename(args.photo), url=server.url, width=1200, height=820,
                          min_size=(640, 480))
    server.on_done = _in_thread(window.destroy)
    webview.start()
    server.stop()
    return 0
