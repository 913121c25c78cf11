"""How every installed GIMP reaches the one engine: socket or port, token file, autostart command.

A native GIMP can reach anything the user can. A sandboxed one cannot:
  - Flatpak GIMP sees `$XDG_RUNTIME_DIR/app/org.gimp.GIMP/` and `~/.var/app/org.gimp.GIMP/`
    at the same paths as the host, shares the host's loopback, and may start host programs
    through `flatpak-spawn --host` once it is allowed to talk to org.freedesktop.Flatpak;
  - Snap GIMP sees `$XDG_RUNTIME_DIR/snap.gimp/` and `~/snap/gimp/`, and cannot start host
    programs at all.
So the socket and token go where every sandbox being installed can see them, and each
sandbox gets its own engine.json (it reads `$XDG_CONFIG_HOME`, which the sandbox moves).
"""

import os
import tempfile

from .profiles import FLATPAK_APP, SNAP_NAME

DEFAULT_PORT = 47821  # plugin/tinct_core/config.py and engine/server/paths.py use the same port
HOST = "127.0.0.1"
# AF_UNIX paths are limited to 108 bytes on Linux and 104 on macOS (terminating NUL included).
MAX_SOCKET_PATH = 100
FLATPAK_TALK_OVERRIDE = "flatpak override --user --talk-name=org.freedesktop.Flatpak %s" % FLATPAK_APP


class Endpoint(object):
    """Where the engine listens and keeps its token, plus what the user must know.

    socket / port: exactly one is set; host is the TCP host (loopback only)
    token_file:    the token the engine writes and every client reads
    overrides:     `flatpak override ...` commands the user must run (printed, never run for them)
    notes:         plain sentences for the report
    """

    def __init__(self, socket=None, port=None, token_file=None, overrides=(), notes=()):
        self.socket = socket
        self.port = port
        self.host = HOST
        self.token_file = token_file
        self.overrides = list(overrides)
        self.notes = list(notes)

    def describe(self):
        return "socket %s" % self.socket if self.socket else "TCP %s:%d" % (self.host, self.port)

    def address(self):
        """The address as the plug-in's client writes it ("unix:PATH" or "HOST:PORT")."""
        return "unix:%s" % self.socket if self.socket else "%s:%d" % (self.host, self.port)


def tinct_config_dir(env, home, platform):
    """The engine's and plug-in's config folder on the host (as the plug-in core computes it)."""
    if platform.startswith("win"):
        return os.path.join(env.get("APPDATA") or os.path.join(home, "AppData", "Roaming"), "tinct")
    if platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "tinct")
    return os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "tinct")


def sandbox_config_dir(packaging, home):
    """The folder a sandboxed GIMP's plug-in sees as `$XDG_CONFIG_HOME/tinct` (host path)."""
    if packaging == "flatpak":
        return os.path.join(home, ".var", "app", FLATPAK_APP, "config", "tinct")
    if packaging == "snap":
        return os.path.join(home, "snap", SNAP_NAME, "current", ".config", "tinct")
    return None


def runtime_dir(env, platform):
    """The user's runtime folder ($XDG_RUNTIME_DIR when it exists), None where there is none."""
    xdg = env.get("XDG_RUNTIME_DIR")
    if platform.startswith("win") or not xdg or not os.path.isdir(xdg):
        return None
    return xdg


def native_socket_dir(env, platform):
    """Where `tinct serve` puts its socket by default (the same rule as tinct_core/config.py)."""
    runtime = runtime_dir(env, platform)
    if runtime:
        return os.path.join(runtime, "tinct")
    uid = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), "tinct-" + uid)


def plan_endpoint(packagings, env, home, platform):
    """The Endpoint for a set of packagings ({"native", "flatpak", "snap"}) on this platform."""
    packagings = set(packagings)
    config_dir = tinct_config_dir(env, home, platform)
    if platform.startswith("win"):
        return Endpoint(port=DEFAULT_PORT, token_file=os.path.join(config_dir, "token"))
    runtime = runtime_dir(env, platform)
    overrides, notes = [], []
    if "snap" in packagings:
        folder = os.path.join(runtime, "snap." + SNAP_NAME, "tinct") if runtime else None
        token_dir = sandbox_config_dir("snap", home)
        notes.append("The Snap GIMP cannot start programs outside its sandbox: start the engine with "
                     "`tinct serve` before you colorize there.")
        if "flatpak" in packagings:
            shared = [token_dir] + ([folder] if folder else [])
            overrides.append("flatpak override --user %s %s" % (
                " ".join("--filesystem=%s" % _flatpak_fs(p, env, home) for p in shared), FLATPAK_APP))
    elif "flatpak" in packagings:
        folder = os.path.join(runtime, "app", FLATPAK_APP, "tinct") if runtime else None
        token_dir = sandbox_config_dir("flatpak", home)
    else:
        folder = native_socket_dir(env, platform)
        token_dir = config_dir
    if "flatpak" in packagings:
        overrides.append(FLATPAK_TALK_OVERRIDE)
        notes.append("The Flatpak GIMP starts the engine through `flatpak-spawn --host`, which needs the "
                     "override below (run it once).")
    token_file = os.path.join(token_dir, "token")
    if folder and len(os.path.join(folder, "engine.sock").encode("utf-8")) <= MAX_SOCKET_PATH:
        return Endpoint(socket=os.path.join(folder, "engine.sock"), token_file=token_file,
                        overrides=overrides, notes=notes)
    return Endpoint(port=DEFAULT_PORT, token_file=token_file, overrides=overrides, notes=notes)


def _flatpak_fs(path, env, home):
    """A host path written the way `flatpak override --filesystem` expects (xdg-run/..., ~/...)."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and path.startswith(runtime + os.sep):
        return "xdg-run/" + os.path.relpath(path, runtime)
    if path.startswith(home + os.sep):
        return "~/" + os.path.relpath(path, home)
    return path
