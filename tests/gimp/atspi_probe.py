"""Reads GIMP's GUI through the accessibility bus (AT-SPI), inside the chroot, for the GIMP tests.

Not imported on the host: tests/gimp/gui.py runs it with the chroot's python3 (python3-gi,
gir1.2-atspi-2.0) next to `gimp-3.0` on Xvfb, on the same D-Bus session. It reads commands
on stdin and answers one JSON line each:

  bar <timeout>   wait until an image window's status bar shows a progress bar; {"value": 0..1}
  value           the progress bar's value and whether it is showing
  cancel          press the status bar's Cancel button (what a user does to stop a plug-in)
  labels <title>  the texts of the labels in the window named <title> (of any application)
"""

import json
import sys
import time

import gi

gi.require_version("Atspi", "2.0")
from gi.repository import Atspi  # noqa: E402

SHOWING = Atspi.StateType.SHOWING


def gimp_apps():
    desktop = Atspi.get_desktop(0)
    apps = []
    for i in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(i)
        if app is not None and "gimp" in (app.get_name() or "").lower():
            apps.append(app)
    return apps


def showing(node):
    try:
        return node.get_state_set().contains(SHOWING)
    except Exception:
        return False


def find_bar(node, depth=0):
    """The first showing progress bar under node (GIMP's status bar shows one only while a
    progress runs)."""
    try:
        if node.get_role_name() == "progress bar" and showing(node):
            return node
        count = node.get_child_count()
    except Exception:
        return None
    if depth > 40:
        return None
    for i in range(count):
        child = node.get_child_at_index(i)
        if child is not None:
            found = find_bar(child, depth + 1)
            if found is not None:
                return found
    return None


def texts(node, out, depth=0):
    """Names of the labels under node."""
    try:
        if node.get_role_name() == "label" and node.get_name():
            out.append(node.get_name())
        count = node.get_child_count()
    except Exception:
        return out
    if depth < 40:
        for i in range(count):
            child = node.get_child_at_index(i)
            if child is not None:
                texts(child, out, depth + 1)
    return out


def window_texts(title):
    """The label texts of the window (any application: a plug-in's dialog is its own process) named title."""
    desktop = Atspi.get_desktop(0)
    for i in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(i)
        if app is None:
            continue
        for j in range(app.get_child_count()):
            win = app.get_child_at_index(j)
            if win is not None and win.get_name() == title:
                return texts(win, [])
    return None


def cancel_button(bar):
    parent = bar.get_parent()
    for i in range(parent.get_child_count()):
        child = parent.get_child_at_index(i)
        if child.get_role_name() in ("button", "push button") and child.get_name() == "Cancel" and showing(child):
            return child
    return None


def main():
    bar = None
    for line in sys.stdin:
        cmd = line.split()
        reply = {}
        try:
            if cmd[0] == "bar":
                deadline = time.time() + float(cmd[1])
                bar = None
                while bar is None and time.time() < deadline:
                    for app in gimp_apps():
                        bar = find_bar(app)
                        if bar is not None:
                            break
                    if bar is None:
                        time.sleep(0.2)
                reply = {"found": bar is not None}
                if bar is not None:
                    reply["value"] = Atspi.Value.get_current_value(bar)
            elif cmd[0] == "value":
                try:
                    reply = {"value": Atspi.Value.get_current_value(bar), "showing": showing(bar)}
                except Exception:  # the widget is gone (its window was rebuilt or closed)
                    reply = {"value": None, "showing": False, "gone": True}
            elif cmd[0] == "labels":
                title = " ".join(cmd[1:])
                deadline = time.time() + 30
                found = window_texts(title)
                while found is None and time.time() < deadline:
                    time.sleep(0.3)
                    found = window_texts(title)
                reply = {"labels": found}
            elif cmd[0] == "cancel":
                button = cancel_button(bar)
                reply = {"found": button is not None}
                if button is not None:
                    reply["clicked"] = Atspi.Action.do_action(button, 0)
            else:
                reply = {"error": "unknown command %r" % cmd[0]}
        except Exception as exc:  # reported to the test, which fails with it
            reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
