"""The server's pure parts: hint-layer composition, the fair queue, frame encoding round trips."""

import threading

import numpy as np
import pytest

from engine.hints import compose_hint_layers, encode_local_hints
from engine.server.framing import BytesStream, FrameError, Limits, encode_frame, read_frame
from engine.server.scheduler import FairQueue


def rgba(h, w, dtype=np.uint8):
    return np.zeros((h, w, 4), dtype)


def test_one_full_size_opaque_layer_is_used_as_it_is():
    layer = rgba(5, 6)
    layer[1, 2] = (10, 20, 30, 255)
    assert compose_hint_layers([(layer, 0, 0, 1.0)], 5, 6) is layer


def test_offsets_place_layers_and_clip_what_lies_outside():
    layer = rgba(3, 3)
    layer[0, 0] = (255, 0, 0, 255)   # lands at (-1, -1): outside
    layer[2, 2] = (0, 255, 0, 255)   # lands at (1, 1)
    out = compose_hint_layers([(layer, -1, -1, 1.0), (rgba(2, 2), 9, 9, 1.0)], 4, 5)
    assert out.shape == (4, 5, 4) and out.dtype == np.uint8
    assert tuple(out[1, 1]) == (0, 255, 0, 255)
    assert (out[..., 3] > 0).sum() == 1


def test_opacity_and_stacking_blend_like_gimp_over():
    bottom = rgba(2, 2)
    bottom[0, 0] = (255, 0, 0, 255)
    top = rgba(2, 2)
    top[0, 0] = (0, 0, 255, 255)
    top[1, 1] = (0, 0, 255, 255)
    out = compose_hint_layers([(bottom, 0, 0, 1.0), (top, 0, 0, 0.5)], 2, 2)
    assert tuple(out[0, 0]) == (128, 0, 128, 255)       # half blue over red
    assert tuple(out[1, 1]) == (0, 0, 255, 128)         # half blue over nothing keeps its color
    faint = rgba(2, 2)
    faint[0, 1] = (0, 255, 0, 1)
    out = compose_hint_layers([(faint, 0, 0, 0.1)], 2, 2)
    assert out[0, 1, 3] >= 1 and tuple(out[0, 1, :3]) == (0, 255, 0)  # a faint touch is still a hint


def test_mixed_depths_compose_to_16_bits_with_the_same_colors():
    eight = rgba(4, 4)
    eight[0, 0] = (255, 128, 0, 255)
    sixteen = rgba(4, 4, np.uint16)
    sixteen[3, 3] = (0, 65535, 0, 65535)
    flt = rgba(2, 2, np.float32)
    flt[0, 0] = (0.0, 0.0, 1.0, 1.0)
    out = compose_hint_layers([(eight, 0, 0, 1.0), (sixteen, 0, 0, 1.0), (flt, 2, 0, 1.0)], 4, 4)
    assert out.dtype == np.uint16
    assert tuple(out[0, 0]) == (65535, 128 * 257, 0, 65535)
    assert tuple(out[3, 3]) == (0, 65535, 0, 65535) and tuple(out[0, 2]) == (0, 0, 65535, 65535)
    ab8, _ = encode_local_hints(eight, 4, 4)
    ab16, _ = encode_local_hints(out, 4, 4)
    assert np.allclose(ab8[0, 0], ab16[0, 0], atol=0.05)


def test_compose_refuses_non_rgba_layers():
    with pytest.raises(ValueError, match="hint layer 2 must be RGBA"):
        compose_hint_layers([(rgba(2, 2), 0, 0, 1.0), (np.zeros((2, 2, 3), np.uint8), 0, 0, 1.0)], 2, 2)


def test_fair_queue_takes_turns_between_owners():
    q = FairQueue()
    for i in range(4):
        q.put("batch", "b%d" % i)
    q.put("gimp", "g0")
    q.put("other", "o0")
    assert q.order() == ["b0", "g0", "o0", "b1", "b2", "b3"]
    got = [q.get(timeout=1) for _ in range(6)]
    assert got == ["b0", "g0", "o0", "b1", "b2", "b3"]
    assert q.get(timeout=0.05) is None


def test_fair_queue_remove_and_close_wake_the_worker():
    q = FairQueue()
    q.put("a", 1)
    q.put("a", 2)
    q.put("b", 3)
    assert q.remove("a", lambda x: x == 2) == [2] and q.count("a") == 1
    assert q.remove("b") == [3] and q.count() == 1
    box = []
    t = threading.Thread(target=lambda: box.append((q.get(), q.get(timeout=5))))
    t.start()
    t.join(0.2)
    assert q.close() == [] and (t.join(5) or True)
    assert box == [(1, None)]


def test_encoded_frames_read_back_exactly():
    arrays = [np.arange(12, dtype=np.uint16).reshape(3, 4), np.ones((2, 2, 2), np.float16),
              np.zeros((0, 3), np.uint8)]
    data = b"".join(bytes(c) for c in encode_frame({"type": "result", "id": 3, "info": {"x": np.float32(1.5)}}, arrays))
    f = read_frame(BytesStream(data), Limits())
    assert f.header["id"] == 3 and f.header["info"] == {"x": 1.5}
    for a, b in zip(arrays, f.buffers):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    with pytest.raises(FrameError, match="truncated frame"):
        read_frame(BytesStream(data[:-1]), Limits())
    with pytest.raises(FrameError, match="over the engine's limit"):
        read_frame(BytesStream(data), Limits(max_frame=len(data) - 1))
