"""engine/ui/session.py without an engine: edits that arrive while a preview is running are
coalesced (the newest wins, the ones it overtook are dropped, nothing queues), points reach the
engine as one-pixel dots on the working grid, and an engine that is gone is EngineDown."""

import threading
import types

import numpy as np
import pytest

from engine.ui.session import EditSession, EngineDown, Superseded


class Errors:
    class EngineError(Exception):
        pass

    class EngineUnavailable(EngineError):
        pass

    class EngineConnectionLost(EngineError):
        pass


class BlockingClient:
    """Answers colorize with zero ab; the first call waits until `release` is set."""

    def __init__(self):
        self.calls = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.down = False

    def colorize(self, photo, hints=None, reference=None, options=None):
        if self.down:
            raise Errors.EngineUnavailable("no engine at the socket")
        self.calls.append(hints)
        if len(self.calls) == 1:
            self.entered.set()
            self.release.wait(30)
        h, w = photo.shape[:2]
        return {"ab": {"data": np.zeros((h, w, 2), np.float16).tobytes()}}


def session(client, shape=(480, 640)):
    photo = np.tile(np.linspace(0, 255, shape[1], dtype=np.float32), (shape[0], 1)).astype(np.uint8)
    mod = types.SimpleNamespace(EngineError=Errors.EngineError, EngineUnavailable=Errors.EngineUnavailable,
                                EngineConnectionLost=Errors.EngineConnectionLost)
    return EditSession(photo, "p.png", "p_color.png", "p_hints.png", new_client=lambda autostart: (mod, client))


def test_edits_during_a_preview_are_coalesced_the_newest_wins():
    client = BlockingClient()
    s = session(client)
    results = {}

    def preview(gen):
        try:
            results[gen] = s.preview([(10 * gen, 10, (200, 0, 0))], 1.0, 0, gen)
        except Superseded:
            results[gen] = "superseded"

    first = threading.Thread(target=preview, args=(1,))
    first.start()
    assert client.entered.wait(30)
    later = [threading.Thread(target=preview, args=(g,)) for g in (2, 3, 4)]
    for t in later:
        t.start()
    while s._wanted != 4:   # all three have announced themselves
        threading.Event().wait(0.01)
    client.release.set()
    for t in [first] + later:
        t.join(30)
    assert results[2] == results[3] == "superseded"
    assert results[1].shape == results[4].shape == (s.preview_h, s.preview_w, 3)
    assert len(client.calls) == 2, "edits queued up instead of the newest winning"
    dots = client.calls[1][0]
    assert dots.shape == (s.preview_h, s.preview_w, 4)
    ys, xs = np.nonzero(dots[..., 3])
    assert list(zip(xs, ys)) == [(40 * s.preview_w // 640, 10 * s.preview_h // 480)]


def test_working_grid_and_an_engine_that_is_gone():
    client = BlockingClient()
    client.release.set()
    s = session(client, (1000, 3000))
    assert (s.preview_h, s.preview_w) == (256, 768)
    client.down = True
    with pytest.raises(EngineDown):
        s.preview([], 1.0, 0, 1)
    with pytest.raises(ValueError):
        s.preview([], 1.0, 7, 2)   # a reference the window never had
