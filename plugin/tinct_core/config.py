# -*- coding: utf-8 -*-
"""Where the Tinct engine lives: the engine config the installer writes, plus env overrides.

The plug-in and `tinct serve` must agree on the address and the token file
without talking to each other, so both derive them from the same file and the
same environment variables (docs/architecture.md, docs/protocol.md). The engine
keeps a mirror of these rules in engine/server/paths.py; a test checks they agree.

Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import

import json
import os
import socket
import sys
import tempfile

CONFIG_ENV = "TINCT_ENGINE_CONFIG"
SOCKET_ENV = "TINCT_SOCKET"
PORT_ENV = "TINCT_PORT"
TOKEN_ENV = "TINCT_TOKEN_FILE"
DEFAULT_PORT = 47821          # TCP port where Unix sockets are missing (Windows)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigError(Exception):
    """The engine config file exists but cannot be used; the message names the file and the key."""


def has_unix_sockets():
    return hasattr(socket, "AF_UNIX") and os.name != "nt"


def _user_tag():
    getuid = getattr(os, "getuid", None)
    if getuid is not None:
        return str(getuid())
    for name in ("USERNAME", "USER"):
        if os.environ.get(name):
            return "".join(c for c in os.environ[name] if c.isalnum()) or "user"
    return "user"


def config_dir():
    """The user's Tinct config folder (holds engine.json and the token)."""
    if os.name == "nt":
        base = os.environ.get("APPDATA") or os.path.expanduser("~")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "tinct")


def runtime_dir():
    """A user-only folder for the socket, lock and log: $XDG_RUNTIME_DIR/tinct, else <tmp>/tinct-<uid>."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "tinct")
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or tempfile.gettempdir()
        return os.path.join(base, "tinct")
    return os.path.join(tempfile.gettempdir(), "tinct-%s" % _user_tag())


def config_path():
    return os.environ.get(CONFIG_ENV) or os.path.join(config_dir(), "engine.json")


def default_socket():
    return os.path.join(runtime_dir(), "engine.sock")


def default_token_file():
    return os.path.join(config_dir(), "token")


def _port(value, where):
    if value is None or value == "":
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError("%s: port must be a number, not %r" % (where, value))
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise ConfigError("%s: port %d is outside 1..65535" % (where, port))
    return port


class EngineConfig(object):
    """Resolved engine settings: where to connect, which token file, how to start the engine."""

    def __init__(self, path=None, python=None, command=None, socket_path=None, port=None, host="127.0.0.1",
                 token_file=None, found=False):
        self.path = path
        self.python = python
        self.command = list(command) if command else None
        self.socket = socket_path
        self.port = port
        self.host = host or "127.0.0.1"
        self.token_file = token_file or default_token_file()
        self.found = found

    @property
    def transport(self):
        """'tcp' when a port is set (or there are no Unix sockets), else 'unix'."""
        return "tcp" if self.port or not has_unix_sockets() else "unix"

    def address(self):
        if self.transport == "tcp":
            return (self.host, self.port or DEFAULT_PORT)
        return self.socket or default_socket()

    def state_dir(self):
        """Where the engine keeps its lock and log: beside the socket, else the runtime folder."""
        if self.transport == "unix":
            return os.path.dirname(os.path.abspath(self.address()))
        return runtime_dir()

    def log_file(self):
        return os.path.join(self.state_dir(), "engine.log")

    def describe(self):
        if self.transport == "tcp":
            host, port = self.address()
            return "%s:%d" % (host, port)
        return "unix:%s" % self.address()

    def start_command(self):
        """The recorded engine command (or `python -m engine serve`), with this config's address appended."""
        cmd = list(self.command) if self.command else None
        if not cmd and self.python:
            cmd = [self.python, "-m", "engine", "serve"]
        if not cmd:
            return None
        if self.transport == "tcp":
            cmd += ["--port", str(self.address()[1])]
        else:
            cmd += ["--socket", self.address()]
        return cmd + ["--token-file", self.token_file]

    def __repr__(self):
        return "EngineConfig(%s, token_file=%s)" % (self.describe(), self.token_file)


def load(path=None, environ=None):
    """Read engine.json (missing is fine: defaults) and apply TINCT_SOCKET / TINCT_PORT / TINCT_TOKEN_FILE.

    Everything is resolved now, from the current environment, so the result does not change later."""
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV) or os.path.join(config_dir(), "engine.json")
    data = {}
    found = os.path.isfile(path)
    if found:
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except (IOError, OSError) as exc:
            raise ConfigError("%s: cannot read the engine config (%s)" % (path, exc))
        except ValueError as exc:
            raise ConfigError("%s: not valid JSON (%s); reinstall Tinct or fix the file" % (path, exc))
        if not isinstance(data, dict):
            raise ConfigError("%s: the engine config must be a JSON object" % path)
    command = data.get("command")
    if command is not None and (not isinstance(command, list) or not all(_is_text(c) for c in command)):
        raise ConfigError("%s: \"command\" must be a list of strings" % path)
    port = _port(data.get("port"), "%s: \"port\"" % path)
    sock = data.get("socket")
    token_file = data.get("token_file")
    if env.get(SOCKET_ENV):
        sock = env[SOCKET_ENV]
        port = None
    if env.get(PORT_ENV):
        port = _port(env[PORT_ENV], PORT_ENV)
    if env.get(TOKEN_ENV):
        token_file = env[TOKEN_ENV]
    host = data.get("host") or "127.0.0.1"
    if host not in LOCAL_HOSTS:
        raise ConfigError("%s: host %r is not this machine; Tinct only talks to a local engine (127.0.0.1)"
                          % (path, host))
    return EngineConfig(path=path, python=data.get("python"), command=command,
                        socket_path=os.path.expanduser(sock) if sock else default_socket(), port=port, host=host,
                        token_file=os.path.expanduser(token_file) if token_file else None, found=found)


def _is_text(value):
    try:
        return isinstance(value, basestring)  # noqa: F821  (Python 2)
    except NameError:
        return isinstance(value, str)
