"""GIMP's GUI for the tests: Xvfb, a D-Bus session with the accessibility bus, xdotool, AT-SPI.

Everything runs inside the chroot (Xvfb, dbus-daemon, xdotool, tests/gimp/atspi_probe.py);
the test drives it from the host.
"""

import contextlib
import json
import os
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def desktop(session, screen="1280x1024x24", accessibility=False):
    """An X display (Xvfb) and, with accessibility, a D-Bus session bus on which GTK publishes
    GIMP's widgets (AT-SPI). Yields the environment GIMP and the helpers need."""
    display = ":%d" % (50 + os.getpid() % 40)
    procs = [subprocess.Popen(session.chroot_cmd(["/usr/bin/Xvfb", display, "-screen", "0", screen, "-nolisten",
                                                  "tcp"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    env = {"DISPLAY": display}
    try:
        if accessibility:
            bus = session.path("run", "bus-%d" % int(time.time() * 1000))
            procs.append(subprocess.Popen(session.chroot_cmd(["dbus-daemon", "--session", "--nofork",
                                                              "--address=unix:path=" + bus]),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=" + bus
            for _ in range(50):
                if os.path.exists(bus):
                    break
                time.sleep(0.1)
            # GTK publishes its widgets only when the session says accessibility is on
            subprocess.run(session.chroot_cmd(
                ["dbus-send", "--session", "--print-reply", "--dest=org.a11y.Bus", "/org/a11y/bus",
                 "org.freedesktop.DBus.Properties.Set", "string:org.a11y.Status", "string:IsEnabled",
                 "variant:boolean:true"], env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=30, check=True)
        time.sleep(0.5)
        yield env
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def xdotool(session, env, *args, timeout=30):
    """xdotool inside the chroot; its stdout split in words."""
    return subprocess.run(session.chroot_cmd(["timeout", str(timeout), "xdotool"] + list(args), env),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True).stdout.split()


def window_name(session, env, window):
    return subprocess.run(session.chroot_cmd(["xdotool", "getwindowname", window], env), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True).stdout.strip()


class Probe(object):
    """tests/gimp/atspi_probe.py running inside the chroot on the desktop's session bus."""

    def __init__(self, session, env):
        path = session.path("atspi_probe.py")
        shutil.copy2(os.path.join(HERE, "atspi_probe.py"), path)
        self.proc = subprocess.Popen(session.chroot_cmd(["python3", path], env), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)

    def ask(self, *cmd):
        self.proc.stdin.write(" ".join(str(c) for c in cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the AT-SPI probe ended")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError("AT-SPI probe: %s" % reply["error"])
        return reply

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

