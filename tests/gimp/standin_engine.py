"""Host side of the GIMP tests' stand-in engine (see standin_client.py): the real Colorizer
behind a minimal framing on 127.0.0.1, used only while engine/server (issue 3) is absent."""

import json
import socket
import struct
import threading

import numpy as np


def _recv(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _send(conn, obj, data=b""):
    raw = json.dumps(obj).encode("utf-8")
    conn.sendall(struct.pack(">I", len(raw)) + raw + data)


def _array(meta, data):
    shape = (meta["height"], meta["width"]) + ((meta["channels"],) if meta["channels"] > 1 else ())
    return np.frombuffer(data, dtype=np.dtype(meta["dtype"])).reshape(shape)


class StandInEngine(object):
    def __init__(self):
        from engine.pipeline import Colorizer
        self.colorizer = Colorizer()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.last_options = None
        self.delay = 0.0       # seconds to stall before answering (the cancel test)
        self.started = threading.Event()
        self.release = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self._stop = True
        self.sock.close()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except Exception as exc:  # reported to the client as an error reply
                    try:
                        _send(conn, {"ok": False, "error": "%s" % exc})
                    except OSError:
                        pass

    def _handle(self, conn):
        (n,) = struct.unpack(">I", _recv(conn, 4))
        header = json.loads(_recv(conn, n).decode("utf-8"))
        photo = _array(header["photo"], _recv(conn, header["photo"]["nbytes"]))
        H, W = photo.shape[:2]
        hints = None
        for h in header["hints"]:
            rgba = _array(h, _recv(conn, h["nbytes"])).astype(np.float32)
            if hints is None:
                hints = np.zeros((H, W, 4), np.float32)
            x, y = h.get("x", 0), h.get("y", 0)
            y0, y1, x0, x1 = max(0, y), min(H, y + h["height"]), max(0, x), min(W, x + h["width"])
            if y1 <= y0 or x1 <= x0:
                continue
            src = rgba[y0 - y:y1 - y, x0 - x:x1 - x]
            a = src[..., 3:4] / 255.0 * h.get("opacity", 1.0)
            dst = hints[y0:y1, x0:x1]
            dst[..., :3] = src[..., :3] * a + dst[..., :3] * (1 - a)
            dst[..., 3:4] = 255.0 * (a + dst[..., 3:4] / 255.0 * (1 - a))
        if hints is not None:
            hints = np.clip(np.round(hints), 0, 255).astype(np.uint8)
        ref = header.get("reference")
        reference = _array(ref, _recv(conn, ref["nbytes"])) if ref else None
        opts = header.get("options", {})
        self.last_options = opts
        self.requests += 1
        _send(conn, {"progress": 0.1, "message": "Colorizing"})
        self.started.set()
        if self.delay:
            self.release.wait(self.delay)
        res = self.colorizer.colorize(photo, hints=hints, reference=reference, size=opts.get("size", 256))
        bits = opts.get("render", 8)
        rgb = np.ascontiguousarray(res.render(bits=bits))
        _send(conn, {"ok": True, "width": W, "height": H, "dtype": str(rgb.dtype), "nbytes": rgb.nbytes,
                     "info": {"device": res.info.get("device")}}, rgb.tobytes())
