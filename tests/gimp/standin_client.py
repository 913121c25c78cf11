# A stand-in for plugin/tinct_core/client.py, installed into the chroot profile by the GIMP
# tests ONLY while the real client (issue 3) is absent. It speaks a minimal framing to
# tests/gimp/standin_engine.py, which runs the real engine.pipeline.Colorizer on the host.
# Same call shape as the real EngineClient.colorize(); stdlib only.
import json
import os
import socket
import struct


class EngineError(Exception):
    pass


def _recv(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise EngineError("the Tinct engine closed the connection")
        buf += chunk
    return buf


class EngineClient(object):
    max_pixels = None

    def __init__(self, config=None):
        self.port = int(os.environ.get("TINCT_PORT", "0"))

    def _connect(self):
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=120)
        except (OSError, socket.error) as exc:
            raise EngineError("cannot reach the Tinct engine on 127.0.0.1:%d (%s)" % (self.port, exc))

    def hello(self):
        return {"device": "cpu"}

    def colorize(self, photo, hints, reference=None, damage=None, instances=None, options=None,
                 progress=None, cancel=None):
        blobs = []

        def meta(d):
            m = dict((k, v) for k, v in d.items() if k != "data")
            m["nbytes"] = len(d["data"])
            blobs.append(d["data"])
            return m

        header = {"photo": meta(photo), "hints": [meta(h) for h in hints or []],
                  "reference": meta(reference) if reference else None, "options": options or {}}
        raw = json.dumps(header).encode("utf-8")
        sock = self._connect()
        try:
            sock.sendall(struct.pack(">I", len(raw)) + raw)
            for b in blobs:
                sock.sendall(b)
            while True:
                (n,) = struct.unpack(">I", _recv(sock, 4))
                reply = json.loads(_recv(sock, n).decode("utf-8"))
                if reply.get("progress") is not None:
                    if progress:
                        progress(reply["progress"], reply.get("message", ""))
                    continue
                if not reply.get("ok"):
                    raise EngineError(reply.get("error", "engine error"))
                data = _recv(sock, reply["nbytes"])
                return {"rgb": {"data": data, "width": reply["width"], "height": reply["height"],
                                "dtype": reply["dtype"]}, "info": reply.get("info", {})}
        finally:
            sock.close()
