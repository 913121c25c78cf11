"""Fuzzing the engine's frame parser and request checks (bounded runs; bench/bench_server.py --fuzz does 100,000).

Property: whatever bytes arrive, reading and checking a frame either succeeds or
raises FrameError / ProtocolError with a one-line message; never another
exception, never a hang, never an allocation beyond the limits. Accepted
colorize requests also go through the worker's pre-processing (hint composition,
mask placement) without error.
"""

import json
import struct
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.hints import compose_hint_layers
from engine.server.framing import BytesStream, FrameError, Limits, read_frame
from engine.server.protocol import ProtocolError, check_request, place_mask

TOKEN = "ab" * 32
LIMITS = Limits(max_frame=1 << 20, max_header=1 << 16)
MAX_PIXELS = 1 << 16
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def process(data, greeted=True):
    """What the engine does with `data` up to the point of queueing it; returns the outcome's kind."""
    t0 = time.perf_counter()
    try:
        frame = read_frame(BytesStream(data), LIMITS)
    except FrameError as exc:
        assert exc.code and exc.message and "\n" not in exc.message
        return "frame_error"
    finally:
        assert time.perf_counter() - t0 < 2.0
    if frame is None:
        return "eof"
    assert frame.nbytes <= LIMITS.max_frame
    try:
        kind, rid, request = check_request(frame, TOKEN, greeted, MAX_PIXELS)
    except ProtocolError as exc:
        assert exc.code and exc.message and "\n" not in exc.message
        return "protocol_error"
    if request is not None:
        H, W = request.height, request.width
        if request.hints:
            out = compose_hint_layers(request.hints, H, W)
            assert out.shape == (H, W, 4)
        for mask, x, y in request.instances + ([request.damage] if request.damage else []):
            assert place_mask(mask, x, y, H, W).shape == (H, W)
    return kind


def pack(header, payload=b""):
    raw = json.dumps(header).encode("utf-8")
    return struct.pack(">4sIQ", b"TNCT", len(raw), len(payload)) + raw + payload


def valid_colorize():
    photo = np.arange(24 * 20, dtype=np.uint8).reshape(24, 20)
    hint = np.zeros((6, 5, 4), np.uint8)
    hint[2, 2] = (255, 0, 0, 255)
    mask = np.ones((24, 20), np.uint8)
    header = {"type": "colorize", "id": 1, "token": TOKEN, "photo": {"buffer": 0},
              "hints": [{"buffer": 1, "x": 3, "y": -1, "opacity": 0.5}], "instances": [{"buffer": 2}],
              "options": {"render": 8, "size": 16},
              "buffers": [{"dtype": "uint8", "shape": [24, 20]}, {"dtype": "uint8", "shape": [6, 5, 4]},
                          {"dtype": "uint8", "shape": [24, 20]}]}
    return pack(header, photo.tobytes() + hint.tobytes() + mask.tobytes())


BASE = valid_colorize()


def test_the_base_frame_is_accepted():
    assert process(BASE) == "colorize"
    assert process(BASE, greeted=False) == "protocol_error"
    assert process(b"") == "eof"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    process(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_prefix(tail):
    process(b"TNCT" + tail)
    process(BASE[:16] + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(BASE)))
def test_mutated_and_truncated_valid_frames(flips, cut):
    data = bytearray(BASE)
    for pos, value in flips:
        data[pos] = value
    process(bytes(data[:cut]))
    process(bytes(data))


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40), st.floats(allow_nan=True),
                         st.text(max_size=8))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=12)
DIM = st.one_of(st.integers(0, 40), st.sampled_from([-1, 2 ** 31, 1.5, True, "8"]))
BUFFER = st.fixed_dictionaries({"dtype": st.one_of(st.sampled_from(["uint8", "uint16", "float16", "float32", "int8"]),
                                                  JSON),
                                "shape": st.lists(DIM, min_size=0, max_size=5)})
REF = st.one_of(JSON_SCALARS, st.fixed_dictionaries(
    {"buffer": st.one_of(st.integers(-1, 5), JSON_SCALARS)},
    optional={"x": st.one_of(st.integers(-50, 50), JSON_SCALARS), "y": st.integers(-50, 50),
              "opacity": st.one_of(st.floats(-1, 2), JSON_SCALARS)}))
OPTIONS = st.fixed_dictionaries({}, optional={
    "size": st.one_of(st.integers(-5, 5000), JSON_SCALARS), "render": st.sampled_from([0, 8, 16, 12, None, "8"]),
    "ab": st.sampled_from(["float16", "float32", "none", None, "x"]), "method": st.sampled_from(["net", "levin", 1]),
    "device": st.one_of(st.sampled_from(["auto", "cpu", "gpu", "tpu"]), JSON),
    "instances": st.sampled_from(["auto", "none", "selection", None, 0])})


@FUZZ
@given(st.fixed_dictionaries(
    {"type": st.sampled_from(["colorize", "hello", "status", "cancel", "shutdown", "nope", 5]),
     "id": st.one_of(st.integers(-3, 10), st.text(max_size=70), JSON_SCALARS),
     "token": st.sampled_from([TOKEN, "", None, "x"]),
     "buffers": st.lists(BUFFER, max_size=5)},
    optional={"photo": REF, "hints": st.one_of(st.lists(REF, max_size=4), JSON), "reference": REF, "damage": REF,
              "instances": st.one_of(st.lists(REF, max_size=3), JSON), "options": st.one_of(OPTIONS, JSON),
              "protocol": st.sampled_from([1, 2, "1", None]), "target": JSON}),
    st.integers(-3, 3), st.binary(max_size=64))
def test_structured_headers_with_matching_or_wrong_payloads(header, skew, noise):
    size = 0
    for desc in header["buffers"]:
        n = {"uint16": 2, "float16": 2, "float32": 4}.get(desc["dtype"] if isinstance(desc["dtype"], str) else "", 1)
        for d in desc["shape"]:
            n *= d if isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 40 else 1
        size += n
    payload = (bytes(range(256)) * (size // 256 + 1))[:max(0, size + skew)]
    process(pack(header, payload))
    process(pack(header, payload) + noise)
