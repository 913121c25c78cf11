"""The wire format (docs/protocol.md): one frame = a 16-byte prefix, a JSON header, raw buffers.

    b"TNCT" | header length (uint32 BE) | payload length (uint64 BE) | header (UTF-8 JSON) | payload

The header's "buffers" list gives each payload buffer's dtype and shape; the
buffers follow one another in that order with no padding, little-endian. Pixels
are never re-encoded (no PNG, no base64), so a 12 MP photo costs one copy.

`read_frame` is the only code that touches untrusted bytes before they are
checked: every length is checked against the limits before anything is
allocated, and every failure is a FrameError naming what was wrong.
"""

import json
import socket
import struct

import numpy as np

MAGIC = b"TNCT"
PREFIX = struct.Struct(">4sIQ")
WIRE_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2"),
               "float32": np.dtype("<f4")}
MAX_BUFFERS = 256
MAX_DIM = 1 << 20
READ_CHUNK = 1 << 22


class FrameError(Exception):
    """A frame that cannot be accepted; `code` says which kind (docs/protocol.md, "Errors")."""

    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


class Limits:
    """What one frame may hold. The defaults fit a 100 MP photo in 32-bit float RGB plus hint layers."""

    def __init__(self, max_frame=2 << 30, max_header=1 << 20, read_timeout=30.0, idle_timeout=600.0):
        self.max_frame = int(max_frame)
        self.max_header = int(max_header)
        self.read_timeout = float(read_timeout)
        self.idle_timeout = float(idle_timeout)


class Frame:
    """A checked frame: the header dict and its buffers as numpy arrays (views on one payload)."""

    def __init__(self, header, buffers, nbytes):
        self.header = header
        self.buffers = buffers
        self.nbytes = nbytes

    @property
    def type(self):
        return self.header.get("type")


def buffer_nbytes(index, desc):
    """Bytes that buffer `index` needs; FrameError when its descriptor is malformed."""
    where = "buffer %d" % index
    if not isinstance(desc, dict):
        raise FrameError("bad_frame", "%s: each entry of \"buffers\" must be an object with dtype and shape" % where)
    dtype = desc.get("dtype")
    if not isinstance(dtype, str) or dtype not in WIRE_DTYPES:
        raise FrameError("bad_dtype", "%s has dtype %r; the wire carries %s" % (
            where, dtype, ", ".join(sorted(WIRE_DTYPES))))
    shape = desc.get("shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
        raise FrameError("bad_shape", "%s: shape must be a list of 1 to 4 sizes, got %r" % (where, _short(shape)))
    n = WIRE_DTYPES[dtype].itemsize
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_DIM:
            raise FrameError("bad_shape", "%s: shape %s has a size that is not a whole number in 0..%d"
                             % (where, _short(shape), MAX_DIM))
        n *= d
    return n


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Reader:
    """Fills buffers exactly from `stream.readinto`, turning EOF and timeouts into FrameErrors."""

    def __init__(self, stream):
        self.stream = stream
        self.started = False

    def fill(self, view, what, total):
        """Fill `view` completely; returns False on a clean EOF before the frame's first byte."""
        got = 0
        size = len(view)
        while got < size:
            try:
                n = self.stream.readinto(view[got:got + READ_CHUNK])
            except socket.timeout:
                if not self.started:
                    raise FrameError("idle", "closing an idle connection")
                raise FrameError("timeout", "timed out in the middle of a frame, reading the %s (got %d of %d bytes)"
                                 % (what, got, total))
            if not n:
                if not self.started and got == 0:
                    return False
                raise FrameError("truncated", "truncated frame: the connection closed after %d of the %d bytes of "
                                 "the %s" % (got, total, what))
            if not self.started:
                self.started = True
                begin = getattr(self.stream, "frame_started", None)
                if begin:
                    begin()
            got += n
        return True


def read_frame(stream, limits):
    """Read one frame from `stream` (.readinto(view) -> n, 0 at EOF; optional .frame_started()).

    Returns a Frame, or None when the peer closed cleanly between frames.
    Raises FrameError for anything malformed, truncated, oversized or timed out."""
    reader = _Reader(stream)
    prefix = bytearray(PREFIX.size)
    if not reader.fill(memoryview(prefix), "frame prefix", PREFIX.size):
        return None
    magic, header_len, payload_len = PREFIX.unpack(bytes(prefix))
    if magic != MAGIC:
        raise FrameError("bad_frame", "not a Tinct frame: it starts with %r, expected %r (see docs/protocol.md)"
                         % (bytes(prefix[:4]), MAGIC))
    if header_len < 2:
        raise FrameError("bad_frame", "frame header length %d is too short for a JSON object" % header_len)
    if header_len > limits.max_header:
        raise FrameError("too_large", "frame header of %d bytes is over the limit of %d bytes"
                         % (header_len, limits.max_header))
    total = PREFIX.size + header_len + payload_len
    if total > limits.max_frame:
        raise FrameError("too_large", "frame of %d bytes (%.1f MB) is over the engine's limit of %.1f MB "
                         "(tinct serve --max-frame-mb)" % (total, total / 1e6, limits.max_frame / 1e6))
    raw = bytearray(header_len)
    reader.fill(memoryview(raw), "header", header_len)
    header = parse_header(bytes(raw))
    descs = header.get("buffers", [])
    if not isinstance(descs, list):
        raise FrameError("bad_frame", "\"buffers\" must be a list")
    if len(descs) > MAX_BUFFERS:
        raise FrameError("bad_frame", "%d buffers in one frame; at most %d" % (len(descs), MAX_BUFFERS))
    sizes = [buffer_nbytes(i, d) for i, d in enumerate(descs)]
    if sum(sizes) != payload_len:
        raise FrameError("bad_length", "the payload is %d bytes but the buffers in the header need %d"
                         % (payload_len, sum(sizes)))
    payload = bytearray(payload_len)
    reader.fill(memoryview(payload), "payload", payload_len)
    buffers = []
    offset = 0
    for desc, size in zip(descs, sizes):
        dtype = WIRE_DTYPES[desc["dtype"]]
        arr = np.frombuffer(payload, dtype=dtype, count=size // dtype.itemsize, offset=offset)
        buffers.append(arr.reshape(desc["shape"]))
        offset += size
    return Frame(header, buffers, total)


def parse_header(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("bad_json", "frame header is not UTF-8 (%s)" % exc)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FrameError("bad_json", "frame header is not valid JSON (%s)" % (str(exc)[:120] or "too deeply nested"))
    if not isinstance(header, dict):
        raise FrameError("bad_json", "frame header must be a JSON object, got %s" % type(header).__name__)
    return header


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def encode_frame(header, arrays=()):
    """[prefix + header bytes, buffer views...] for sendall; header["buffers"] is filled from `arrays`."""
    views = []
    descs = []
    for arr in arrays:
        arr = np.asarray(arr)
        name = arr.dtype.name
        if name not in WIRE_DTYPES:
            raise ValueError("cannot send dtype %s" % name)
        arr = np.ascontiguousarray(arr, dtype=WIRE_DTYPES[name])
        descs.append({"dtype": name, "shape": list(arr.shape)})
        views.append(memoryview(arr).cast("B") if arr.size else memoryview(b""))
    header = dict(header)
    if descs:
        header["buffers"] = descs
    raw = json.dumps(header, separators=(",", ":"), default=_json_default).encode("utf-8")
    payload_len = sum(len(v) for v in views)
    return [PREFIX.pack(MAGIC, len(raw), payload_len) + raw] + views


class BytesStream:
    """An in-memory stream for read_frame (tests and the fuzzer)."""

    def __init__(self, data):
        self.data = memoryview(bytes(data))
        self.pos = 0

    def readinto(self, view):
        n = min(len(view), len(self.data) - self.pos)
        view[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class SocketStream:
    """A socket as a stream: the idle timeout until a frame's first byte, the read timeout after it."""

    def __init__(self, sock, limits):
        self.sock = sock
        self.limits = limits

    def wait_for_frame(self):
        self.sock.settimeout(self.limits.idle_timeout)

    def frame_started(self):
        self.sock.settimeout(self.limits.read_timeout)

    def readinto(self, view):
        return self.sock.recv_into(view)
