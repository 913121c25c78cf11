"""A Unix-socket relay in front of the real engine, to watch and time what the plug-in sends.

The GIMP tests point the plug-in at a relay (TINCT_SOCKET); the engine behind it is the real
one and the relay only forwards bytes (frame format: docs/protocol.md: a 16-byte prefix
"TNCT", header length, payload length; a JSON header; the raw pixel buffers). It can

* record every colorize request: its JSON header to <record_dir>/NNN.json and each pixel
  buffer to NNN-bK.raw, written before the request is passed on, so a GIMP batch script
  that sees its run finish can name the request it made;
* hold: pass the handshake (the first reply frame) through, then hold every later frame the
  engine sends (progress, result) until release(), or let them through one by one (step()):
  a run provably in the middle of its engine request, the moment GIMP's Cancel or an engine
  crash can strike, and GIMP's progress bar can be read between two progress events.
"""

import json
import os
import socket
import struct
import threading

PREFIX = struct.Struct(">4sIQ")


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _read_frame(sock):
    """(whole frame bytes, header dict, payload bytes)."""
    head = _read_exact(sock, PREFIX.size)
    _, header_len, payload_len = PREFIX.unpack(head)
    header = _read_exact(sock, header_len)
    payload = _read_exact(sock, payload_len)
    return head + header + payload, json.loads(header.decode("utf-8")), payload


ITEMSIZE = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}


def split_buffers(header, payload):
    """The payload cut into the header's buffers (bytes, in order)."""
    out, pos = [], 0
    for desc in header.get("buffers") or []:
        n = ITEMSIZE[desc["dtype"]]
        for d in desc["shape"]:
            n *= int(d)
        out.append(payload[pos:pos + n])
        pos += n
    return out


def load_request(record_dir, name):
    """(header, [numpy arrays]) of a recorded request NNN."""
    import numpy as np

    with open(os.path.join(record_dir, name + ".json")) as fh:
        header = json.load(fh)
    arrays = []
    for k, desc in enumerate(header.get("buffers") or []):
        with open(os.path.join(record_dir, "%s-b%d.raw" % (name, k)), "rb") as fh:
            arrays.append(np.frombuffer(fh.read(), np.dtype(desc["dtype"]).newbyteorder("<"))
                          .reshape(desc["shape"]))
    return header, arrays


class Relay(object):
    def __init__(self, path, engine_path, hold=False, record_dir=None):
        self.path = path
        self.engine_path = engine_path
        self.record_dir = record_dir
        self.holding = threading.Event()   # a request reached the engine and its answer is being held
        self.release = threading.Event()   # let held answers through
        self.closed_by_client = threading.Event()
        self.recorded = 0
        self.passed = 0                    # frames passed to the client after the handshake
        self.requests = 0                  # colorize requests seen
        self._record_lock = threading.Lock()
        self._cond = threading.Condition()
        self._allow = 0
        if not hold:
            self.release.set()
        if record_dir:
            os.makedirs(record_dir, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self):
        self._stop = True
        self.release.set()
        with self._cond:
            self._cond.notify_all()
        try:
            self.sock.close()
        finally:
            if os.path.exists(self.path):
                os.unlink(self.path)

    def _serve(self):
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                engine.connect(self.engine_path)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._up, args=(client, engine), daemon=True).start()
            threading.Thread(target=self._down, args=(engine, client), daemon=True).start()

    def _record(self, header, payload):
        with self._record_lock:
            name = "%03d" % self.recorded
            for k, data in enumerate(split_buffers(header, payload)):
                with open(os.path.join(self.record_dir, "%s-b%d.raw" % (name, k)), "wb") as fh:
                    fh.write(data)
            header = dict(header, token="(recorded)")
            with open(os.path.join(self.record_dir, name + ".json.tmp"), "w") as fh:
                json.dump(header, fh)
            os.rename(os.path.join(self.record_dir, name + ".json.tmp"), os.path.join(self.record_dir, name + ".json"))
            self.recorded += 1

    def _up(self, client, engine):
        """client -> engine, frame by frame; the client closing (GIMP killed the plug-in) is recorded."""
        try:
            while True:
                try:
                    frame, header, payload = _read_frame(client)
                except EOFError:
                    self.closed_by_client.set()
                    break
                if header.get("type") == "colorize":
                    with self._cond:
                        self.requests += 1
                        self.holding.clear()   # set again once this request's answer is held
                        self._allow = 0        # steps granted to an earlier request do not carry over
                    if self.record_dir:
                        self._record(header, payload)
                engine.sendall(frame)
        except OSError:
            self.closed_by_client.set()
        finally:
            for s in (engine, client):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def step(self, frames=1):
        """Let `frames` more held frames through (hold mode), one progress event at a time."""
        with self._cond:
            self._allow += frames
            self._cond.notify_all()

    def _down(self, engine, client):
        """engine -> client: the hello reply at once, later frames only as release() / step() allow.
        An engine that dies while its answer is held closes the client's connection at once, as a
        dead engine does."""
        pending = []
        state = {"dead": False}

        def reader():
            try:
                while True:
                    frame = _read_frame(engine)[0]
                    with self._cond:
                        pending.append(frame)
                        self._cond.notify_all()
            except (EOFError, OSError):
                pass
            with self._cond:
                state["dead"] = True
                self._cond.notify_all()

        try:
            client.sendall(_read_frame(engine)[0])
            threading.Thread(target=reader, daemon=True).start()
            while True:
                with self._cond:
                    while not state["dead"] and not (pending and (self.release.is_set() or self._allow > 0)):
                        if pending:
                            self.holding.set()
                        self._cond.wait(0.2)
                    if state["dead"]:
                        break
                    frame = pending.pop(0)
                    if not self.release.is_set():
                        self._allow -= 1
                    self.passed += 1
                client.sendall(frame)
        except (EOFError, OSError):
            pass
        finally:
            for s in (engine, client):  # shutdown first: it also wakes the other thread's recv()
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
