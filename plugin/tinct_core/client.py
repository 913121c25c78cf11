# -*- coding: utf-8 -*-
"""The engine client: framed requests to `tinct serve` over a local socket, starting it if needed.

GIMP's plug-in process lives for one run, while the engine keeps the model
loaded between runs, so each call opens a connection, greets the engine
(`hello`), sends one request, streams its progress and closes. When nothing
answers, the client starts the engine from the recorded command, waits for its
readiness line, and tries once more. Wire format: docs/protocol.md.

Stdlib only; runs unchanged on Python 2.7 (GIMP 2.10) and Python 3 (GIMP 3).
"""

from __future__ import absolute_import, division

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

from . import config as engine_config

PROTOCOL_VERSION = 1
MAGIC = b"TNCT"
PREFIX = struct.Struct(">4sIQ")
ITEMSIZE = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}
READY_PREFIX = "tinct engine ready"
MAX_REPLY_HEADER = 16 << 20
LOG_LIMIT = 1 << 20
POLL_S = 0.2
_now = getattr(time, "monotonic", time.time)
PY2 = sys.version_info[0] == 2
BIG_ENDIAN = sys.byteorder == "big"


def _native(text):
    """A message as the interpreter's own str (Python 2 would choke on unicode in str(exc))."""
    if PY2 and not isinstance(text, str):
        return text.encode("utf-8", "replace")
    return text


class EngineError(Exception):
    """Anything that stopped a request; the message is one plain sentence for the user."""

    def __init__(self, message, code=None):
        Exception.__init__(self, _native(message))
        self.code = code


class EngineUnavailable(EngineError):
    """No engine answers and none could be started."""


class EngineConnectionLost(EngineError):
    """The engine went away in the middle of a request."""


class EngineRefused(EngineError):
    """The engine answered with an error reply (bad input, engine error, wrong token, ...)."""


class EngineCancelled(EngineError):
    """The request was cancelled."""


class _NotAnswering(Exception):
    pass


# ---- images -> wire buffers ----

def _nbytes(data):
    """Size in bytes of any bytes-like object (a cast memoryview, bytes, bytearray, str on Python 2)."""
    try:
        view = memoryview(data)
    except TypeError:
        return len(data)
    size = view.itemsize
    for d in view.shape or ():
        size *= d
    return size


def _array_bytes(arr):
    """A numpy-like array's bytes without a copy when it is C-contiguous."""
    try:
        view = memoryview(arr)
    except TypeError:
        return arr.tobytes()
    cast = getattr(view, "cast", None)
    if cast is None or not getattr(view, "c_contiguous", False):
        return arr.tobytes()
    return cast("B")


def _swap(data, dtype):
    """Native <-> little-endian on big-endian hosts (the wire is little-endian)."""
    if not BIG_ENDIAN or ITEMSIZE[dtype] == 1:
        return data
    from array import array

    arr = array({"uint16": "H", "float16": "H", "float32": "f"}[dtype])
    load = getattr(arr, "frombytes", None) or getattr(arr, "fromstring")   # Python 3 / Python 2.7
    load(bytes(data))   # (a copy: only on big-endian hosts)
    arr.byteswap()
    dump = getattr(arr, "tobytes", None) or getattr(arr, "tostring")
    return dump()


def _image(obj, what):
    """(fields for the header, buffer descriptor, bytes) for a dict image or a numpy-like array."""
    if isinstance(obj, dict):
        try:
            data = obj["data"]
            width, height = int(obj["width"]), int(obj["height"])
            channels = int(obj.get("channels", 1))
        except (KeyError, TypeError, ValueError):
            raise EngineError("%s must have data, width, height and channels" % what)
        dtype = str(obj.get("dtype") or "uint8")
        if dtype not in ITEMSIZE:
            raise EngineError("%s has dtype %s; Tinct takes %s" % (what, dtype, ", ".join(sorted(ITEMSIZE))))
        expected = width * height * channels * ITEMSIZE[dtype]
        if _nbytes(data) != expected:
            raise EngineError("%s has %d bytes of pixels but %dx%d with %d channel(s) of %s needs %d"
                              % (what, _nbytes(data), width, height, channels, dtype, expected))
        shape = [height, width] if channels == 1 else [height, width, channels]
        fields = dict((k, obj[k]) for k in ("x", "y", "opacity") if obj.get(k) is not None)
    elif hasattr(obj, "shape") and hasattr(obj, "dtype"):
        dtype = str(obj.dtype)
        if dtype not in ITEMSIZE:
            raise EngineError("%s has dtype %s; Tinct takes %s" % (what, dtype, ", ".join(sorted(ITEMSIZE))))
        shape = [int(d) for d in obj.shape]
        data = _array_bytes(obj)
        fields = {}
    else:
        raise EngineError("%s must be a dict (data, width, height, channels, dtype) or an array" % what)
    return fields, {"dtype": dtype, "shape": shape}, _swap(data, dtype)


def build_colorize(photo, hints=None, reference=None, damage=None, instances=None, options=None):
    """(header without id/token, [bytes-like payload buffers]) for a colorize request."""
    descs, datas = [], []

    def add(obj, what):
        fields, desc, data = _image(obj, what)
        fields["buffer"] = len(descs)
        descs.append(desc)
        datas.append(data)
        return fields

    header = {"type": "colorize", "photo": add(photo, "the photo"),
              "hints": [add(h, "hint layer %d" % i) for i, h in enumerate(hints or [], 1)],
              "reference": add(reference, "the reference") if reference is not None else None,
              "damage": add(damage, "the damage mask") if damage is not None else None,
              "instances": [add(m, "instance mask %d" % i) for i, m in enumerate(instances or [], 1)],
              "options": dict(options or {}), "buffers": descs}
    return header, datas


# ---- one connection ----

class _Connection(object):
    """A connected, greeted socket."""

    def __init__(self, sock, token):
        self.sock = sock
        self.token = token
        self.hello = None

    def send(self, header, datas=()):
        header = dict(header)
        header["token"] = self.token
        raw = json.dumps(header, separators=(",", ":")).encode("ascii")
        total = sum(_nbytes(d) for d in datas)
        self.sock.sendall(PREFIX.pack(MAGIC, len(raw), total) + raw)
        for data in datas:
            if _nbytes(data):
                self.sock.sendall(data)

    def _fill(self, size, on_wait):
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            try:
                n = self.sock.recv_into(view[got:], min(size - got, 1 << 22))
            except socket.timeout:
                on_wait()
                continue
            if not n:
                raise EngineConnectionLost("the connection closed")
            got += n
        return buf

    def read(self, on_wait):
        """(header, [bytes per buffer]); on_wait() runs at every poll interval without data."""
        magic, header_len, payload_len = PREFIX.unpack(bytes(self._fill(PREFIX.size, on_wait)))
        if magic != MAGIC or header_len > MAX_REPLY_HEADER:
            raise EngineError("the engine sent something that is not a Tinct frame; is another program using "
                              "its socket or port?")
        header = json.loads(self._fill(header_len, on_wait).decode("utf-8"))
        datas = []
        for desc in header.get("buffers") or []:
            size = ITEMSIZE[desc["dtype"]]
            for d in desc["shape"]:
                size *= int(d)
            datas.append(_swap(self._fill(size, on_wait), desc["dtype"]))
        if sum(len(d) for d in datas) != payload_len:
            raise EngineError("the engine's reply does not match its own header")
        return header, datas

    def close(self):
        try:
            self.sock.close()
        except EnvironmentError:
            pass


def _error_from(header):
    code = header.get("code")
    message = header.get("message") or "the engine refused the request"
    if code == "cancelled":
        return EngineCancelled(message, code)
    return EngineRefused(message, code)


class EngineClient(object):
    """Talks to the local Tinct engine; see docs/protocol.md for the messages.

    config:  an engine_config.EngineConfig (default: engine_config.load(), i.e. engine.json + env)
    command: the engine command to use when the config records none (e.g. [python, "-m", "engine", "serve"])
    autostart: start the engine when none answers (hello and colorize only)
    timeout: seconds without any word from the engine before a colorize request is given up
             (a live engine sends progress at least every 2 s)
    connect_timeout, reply_timeout: for connecting, and for the answer to hello / status / shutdown
    start_timeout: how long an autostarted engine may take to print its readiness line
    Attributes after a hello: last_hello, max_pixels, device; started_engine: the Popen of an
    engine this client started, if any.
    """

    max_pixels = None   # the engine's limit, known after the first hello
    device = None

    def __init__(self, config=None, command=None, autostart=True, timeout=120.0, connect_timeout=5.0,
                 start_timeout=120.0, reply_timeout=15.0):
        self._config = config
        self.command = list(command) if command else None
        self.autostart = autostart
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.start_timeout = float(start_timeout)
        self.reply_timeout = float(reply_timeout)
        self._cancel = threading.Event()
        self._ids = 0
        self.last_hello = None
        self.started_engine = None   # the Popen of an engine this client started, if any

    @property
    def config(self):
        if self._config is None:
            try:
                self._config = engine_config.load()
            except engine_config.ConfigError as exc:
                raise EngineUnavailable(str(exc))
        return self._config

    # ---- public calls ----

    def hello(self):
        """The engine's greeting: protocol, engine version, device, models, max_pixels, ..."""
        conn = self._open(self.autostart)
        conn.close()
        return conn.hello

    def status(self):
        """The engine's status (pid, uptime, queue, ...); EngineUnavailable when none runs. Never autostarts."""
        conn = self._open(False)
        try:
            return self._call(conn, {"type": "status"}, "status")
        finally:
            conn.close()

    def shutdown(self, wait=10.0):
        """Ask the engine to stop; returns the hello of the engine that was stopped."""
        conn = self._open(False)
        try:
            self._call(conn, {"type": "shutdown"}, "bye")
            deadline = _now() + wait
            conn.sock.settimeout(0.2)
            while _now() < deadline:
                try:
                    if not conn.sock.recv(4096):
                        break
                except socket.timeout:
                    continue
                except EnvironmentError:
                    break
        finally:
            conn.close()
        return conn.hello

    def cancel(self):
        """Cancel the request in progress (from another thread)."""
        self._cancel.set()

    def colorize(self, photo, hints=None, reference=None, damage=None, instances=None, options=None,
                 progress=None, cancel=None):
        """Colorize one photo. Images: dicts {data, width, height, channels, dtype[, x, y, opacity]} or arrays.

        options: size, method, device, render (8|16), ab (float16|float32|none), instances (auto|none|selection).
        progress(fraction, message) is called as the engine works; cancel() -> True stops the request.
        Returns {"rgb": {data, width, height, channels, dtype}?, "ab": {...}?, "info": {...}, "width", "height"};
        data is a bytearray (bytes-like: wrap it with bytes() or numpy.frombuffer())."""
        header, datas = build_colorize(photo, hints, reference, damage, instances, options)
        return self._pixel_request(header, datas, progress, cancel)

    def suggest(self, photo, at, hints=None, reference=None, count=8, options=None):
        """The likeliest colors at pixel at=(x, y) of the photo, from the network's distribution head:
        [{"rgb": [r, g, b], "ab": [a, b], "probability": p}, ...] best first. options: size, device."""
        header, datas = build_colorize(photo, hints, reference, options=options)
        for unused in ("damage", "instances"):
            header.pop(unused)
        header.update(type="suggest", at=[int(at[0]), int(at[1])], count=int(count))
        return self._pixel_request(header, datas, None, None)["colors"]

    def detect_damage(self, photo, threshold=None, options=None, progress=None, cancel=None):
        """The engine's damage detector on the photo: {"mask": {data, width, height, channels: 1,
        dtype: "uint8"} (255 = damaged), "info": {"damaged_pixels", ...}}. threshold: 0..1 or None
        (the model's); options: device."""
        header, datas = build_colorize(photo, options=options)
        for unused in ("hints", "reference", "damage", "instances"):
            header.pop(unused)
        header["type"] = "detect_damage"
        if threshold is not None:
            header["threshold"] = float(threshold)
        return self._pixel_request(header, datas, progress, cancel)

    def _pixel_request(self, header, datas, progress, cancel):
        self._cancel.clear()
        conn = self._open(self.autostart)
        try:
            rid = self._next_id()
            header["id"] = rid
            try:
                conn.send(header, datas)
            except EnvironmentError as exc:
                raise self._refusal_or(conn, EngineConnectionLost(
                    "The Tinct engine closed the connection while receiving the photo (%s)." % _reason(exc)))
            return self._await_result(conn, rid, progress, cancel)
        finally:
            conn.close()

    # ---- request plumbing ----

    def _next_id(self):
        self._ids += 1
        return self._ids

    def _call(self, conn, header, reply_type):
        rid = self._next_id()
        header = dict(header, id=rid)
        try:
            conn.send(header)
            conn.sock.settimeout(POLL_S)
            reply, _ = conn.read(self._deadline_watch(self.reply_timeout))
        except EngineConnectionLost:
            raise EngineConnectionLost("The Tinct engine closed the connection before answering.")
        except EnvironmentError as exc:
            raise EngineConnectionLost("The Tinct engine connection failed (%s)." % _reason(exc))
        if reply.get("type") == "error":
            raise _error_from(reply)
        if reply.get("type") != reply_type:
            raise EngineError("the engine answered %s to %s" % (reply.get("type"), header["type"]))
        return reply

    def _deadline_watch(self, seconds):
        deadline = [_now() + seconds]

        def on_wait():
            if _now() > deadline[0]:
                raise EngineError("The Tinct engine did not answer within %d s." % seconds)
        return on_wait

    def _refusal_or(self, conn, fallback):
        """After a failed send, the engine may have said why before closing: prefer its words."""
        try:
            conn.sock.settimeout(2.0)
            header, _ = conn.read(_raise_timeout)
            if header.get("type") == "error":
                return _error_from(header)
        except Exception:
            pass
        return fallback

    def _await_result(self, conn, rid, progress, cancel):
        state = {"last": _now(), "cancel_sent": None}

        def on_wait():
            now = _now()
            wants_cancel = self._cancel.is_set() or (cancel is not None and cancel())
            if wants_cancel and state["cancel_sent"] is None:
                state["cancel_sent"] = now
                try:
                    conn.send({"type": "cancel", "id": self._next_id(), "target": rid})
                except EnvironmentError:
                    raise EngineCancelled("cancelled")
            if state["cancel_sent"] is not None and now - state["cancel_sent"] > 10:
                raise EngineCancelled("cancelled")
            if now - state["last"] > self.timeout:
                raise EngineError("The Tinct engine stopped answering (nothing for %d s)." % self.timeout)

        conn.sock.settimeout(POLL_S)
        while True:
            try:
                header, datas = conn.read(on_wait)
            except EngineConnectionLost:
                raise EngineConnectionLost(
                    "The Tinct engine stopped while working on the photo (the connection closed). It will be "
                    "restarted on the next run; if this keeps happening, see %s." % self.config.log_file())
            except EnvironmentError as exc:
                raise EngineConnectionLost("The Tinct engine connection failed while working on the photo (%s)."
                                           % _reason(exc))
            state["last"] = _now()
            kind = header.get("type")
            if header.get("id") not in (rid, None):
                continue
            if kind == "progress":
                if progress is not None and state["cancel_sent"] is None:
                    progress(float(header.get("fraction", 0.0)), header.get("message", ""))
                on_wait()   # a steady stream of progress must not delay a cancel
                continue
            if kind == "error":
                raise _error_from(header)
            if kind in ("result", "suggestions", "damage"):
                if state["cancel_sent"] is not None:
                    raise EngineCancelled("cancelled")
                return _result(header, datas) if kind != "suggestions" else header
            raise EngineError("the engine sent an unexpected %s message" % kind)

    # ---- connecting and starting ----

    def _open(self, autostart):
        cfg = self.config
        try:
            return self._handshake(cfg)
        except _NotAnswering as exc:
            first = exc
        if not autostart:
            raise EngineUnavailable("No Tinct engine is running at %s (%s)." % (cfg.describe(), first))
        self._start_engine(cfg)
        deadline = _now() + 10.0
        while True:
            try:
                return self._handshake(cfg)
            except _NotAnswering as exc:
                if _now() > deadline:
                    raise EngineUnavailable("The Tinct engine was started but does not answer at %s (%s)."
                                            % (cfg.describe(), exc))
                time.sleep(0.2)

    def _connect(self, cfg):
        if cfg.transport == "tcp":
            family, address = socket.AF_INET, cfg.address()
            if address[0] == "::1":
                family = socket.AF_INET6
        else:
            family, address = socket.AF_UNIX, cfg.address()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(address)
        except EnvironmentError as exc:
            sock.close()
            raise _NotAnswering(_reason(exc))
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _handshake(self, cfg):
        sock = self._connect(cfg)
        conn = _Connection(sock, self._read_token(cfg))
        try:
            reply = self._call(conn, {"type": "hello", "protocol": PROTOCOL_VERSION,
                                      "client": "tinct-plugin python %d.%d" % sys.version_info[:2]}, "hello")
        except EngineConnectionLost as exc:
            conn.close()
            raise _NotAnswering(str(exc))   # an engine on its way out
        except BaseException:
            conn.close()
            raise
        conn.hello = reply
        self.last_hello = reply
        self.max_pixels = reply.get("max_pixels")
        self.device = reply.get("device")
        return conn

    def _read_token(self, cfg):
        try:
            with open(cfg.token_file, "rb") as fh:
                return fh.read().decode("utf-8").strip()
        except EnvironmentError as exc:
            raise EngineUnavailable("An engine answers at %s but its token file %s cannot be read (%s)."
                                    % (cfg.describe(), cfg.token_file, _reason(exc)))

    def start_command(self, cfg=None):
        cfg = cfg or self.config
        if cfg.command or cfg.python or not self.command:
            return cfg.start_command()
        base = engine_config.EngineConfig(path=cfg.path, command=self.command, socket_path=cfg.socket,
                                          port=cfg.port, host=cfg.host, token_file=cfg.token_file)
        return base.start_command()

    def _start_engine(self, cfg):
        cmd = self.start_command(cfg)
        if not cmd:
            raise EngineUnavailable("No Tinct engine is running at %s, and %s records no command to start one. "
                                    "Run `tinct serve`, or reinstall Tinct." % (cfg.describe(), cfg.path))
        log_path = cfg.log_file()
        log = _open_log(log_path)
        kwargs = {"stdin": open(os.devnull, "rb"), "stdout": subprocess.PIPE, "stderr": log}
        if os.name == "nt":
            # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW: outlive the plug-in, no console
            kwargs["creationflags"] = 0x00000008 | 0x00000200 | 0x08000000
        else:
            kwargs["close_fds"] = True
            if PY2:
                kwargs["preexec_fn"] = os.setsid
            else:
                kwargs["start_new_session"] = True  # outlive the plug-in process, no terminal signals
        try:
            proc = subprocess.Popen(cmd, **kwargs)
        except EnvironmentError as exc:
            raise EngineUnavailable("Cannot start the Tinct engine with %s (%s). Reinstall Tinct or fix %s."
                                    % (cmd[0], _reason(exc), cfg.path))
        finally:
            kwargs["stdin"].close()
            log.close()
        self.started_engine = proc
        line = _read_ready_line(proc.stdout, self.start_timeout)
        try:
            proc.stdout.close()
        except EnvironmentError:
            pass
        if line:
            return
        if line is None:
            raise EngineUnavailable("The Tinct engine did not get ready within %d s; see %s."
                                    % (self.start_timeout, log_path))
        proc.wait()
        last = _last_line(log_path)
        if "already running" in last:
            return   # another client started one at the same moment: connect to it
        raise EngineUnavailable("The Tinct engine did not start: %s (see %s)." % (last or "it exited with status %s"
                                                                                % proc.returncode, log_path))


def _result(header, datas):
    out = {"info": header.get("info") or {}, "width": header.get("width"), "height": header.get("height")}
    descs = header.get("buffers") or []
    for name in ("ab", "rgb", "mask"):
        ref = header.get(name)
        if ref is None:
            continue
        desc = descs[ref["buffer"]]
        shape = desc["shape"]
        out[name] = {"data": datas[ref["buffer"]], "width": shape[1], "height": shape[0],
                     "channels": shape[2] if len(shape) > 2 else 1, "dtype": desc["dtype"]}
    return out


def _raise_timeout():
    raise socket.timeout("no reply")


def _reason(exc):
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _open_log(path):
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o700)
    try:
        if os.path.getsize(path) > LOG_LIMIT:
            os.unlink(path)
    except EnvironmentError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def _read_ready_line(stream, timeout):
    """The readiness line from the engine's stdout, "" at EOF without one, None after `timeout` s.
    (Read in a thread, so it also works on Windows pipes.)"""
    box = []

    def reader():
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith(READY_PREFIX):
                    box.append(line)
                    return
        except Exception:
            pass
        box.append("")

    t = threading.Thread(target=reader)
    t.daemon = True
    t.start()
    t.join(timeout)
    return box[0] if box else None


def _last_line(path):
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = [l for l in fh.read().decode("utf-8", "replace").splitlines() if l.strip()]
        return lines[-1].strip() if lines else ""
    except EnvironmentError:
        return ""
