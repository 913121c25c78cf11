"""Where the engine listens and keeps its token, lock and log.

The GIMP-side client finds the engine through plugin/tinct_core/config.py
without asking it anything, so this file applies exactly the same rules (config
file, env overrides, default folders); tests/test_client.py checks both agree.
"""

import json
import os
import socket
import sys
import tempfile

from .. import TinctError

CONFIG_ENV = "TINCT_ENGINE_CONFIG"
SOCKET_ENV = "TINCT_SOCKET"
PORT_ENV = "TINCT_PORT"
TOKEN_ENV = "TINCT_TOKEN_FILE"
DEFAULT_PORT = 47821
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def has_unix_sockets():
    return hasattr(socket, "AF_UNIX") and os.name != "nt"


def _user_tag():
    if hasattr(os, "getuid"):
        return str(os.getuid())
    name = os.environ.get("USERNAME") or os.environ.get("USER") or ""
    return "".join(c for c in name if c.isalnum()) or "user"


def config_dir():
    if os.name == "nt":
        base = os.environ.get("APPDATA") or os.path.expanduser("~")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "tinct")


def runtime_dir():
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "tinct")
    if os.name == "nt":
        return os.path.join(os.environ.get("LOCALAPPDATA") or tempfile.gettempdir(), "tinct")
    return os.path.join(tempfile.gettempdir(), "tinct-%s" % _user_tag())


def config_path():
    return os.environ.get(CONFIG_ENV) or os.path.join(config_dir(), "engine.json")


def default_socket():
    return os.path.join(runtime_dir(), "engine.sock")


def default_token_file():
    return os.path.join(config_dir(), "token")


def state_dir(transport, address):
    """Where the lock (and the autostart log) live: beside the socket, else the runtime folder.

    Tying them to the socket keeps an engine started with --socket (as autostart does)
    consistent whatever its environment; with the defaults it is one engine per user."""
    if transport == "unix":
        return os.path.dirname(os.path.abspath(address))
    return runtime_dir()


def lock_file(transport, address):
    return os.path.join(state_dir(transport, address), "engine.lock")


def _port(value, where):
    if value in (None, ""):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise TinctError("%s: port must be a number, not %r" % (where, value))
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise TinctError("%s: port %d is outside 1..65535" % (where, port))
    return port


def read_config(path=None):
    """engine.json as a dict ({} when missing); TinctError naming the file when it is broken."""
    path = path or config_path()
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise TinctError("%s: cannot read the engine config (%s)" % (path, exc))
    if not isinstance(data, dict):
        raise TinctError("%s: the engine config must be a JSON object" % path)
    return data


def resolve(socket_path=None, port=None, token_file=None, config=None):
    """(transport, address, token_file) from command-line values, else env overrides, else engine.json.

    transport is "unix" (address: a path) or "tcp" (address: ("127.0.0.1", port))."""
    data = read_config() if config is None else config
    cfg_port = _port(data.get("port"), "engine config \"port\"")
    cfg_socket = data.get("socket")
    if os.environ.get(SOCKET_ENV):
        cfg_socket, cfg_port = os.environ[SOCKET_ENV], None
    if os.environ.get(PORT_ENV):
        cfg_port = _port(os.environ[PORT_ENV], PORT_ENV)
    token = token_file or os.environ.get(TOKEN_ENV) or data.get("token_file") or default_token_file()
    if socket_path:
        cfg_socket, cfg_port = socket_path, None
    if port:
        cfg_port = _port(port, "--port")
    if cfg_port or not has_unix_sockets():
        return "tcp", ("127.0.0.1", cfg_port or DEFAULT_PORT), os.path.expanduser(token)
    return "unix", os.path.expanduser(cfg_socket or default_socket()), os.path.expanduser(token)


def describe(transport, address):
    if transport == "tcp":
        return "%s:%d" % address
    return "unix:%s" % address
