"""The engine's `suggest` request (docs/protocol.md), which `tinct ui` uses for the colors it
offers at a point: on a real engine process, through the plug-in's client and by hand."""

import numpy as np
import pytest

from tests.test_server_support import Engine, gray_photo, hello, image_frame, read_until


@pytest.fixture(scope="module")
def engine():
    e = Engine().start()
    yield e
    e.stop()


def test_suggestions_match_the_in_process_distribution_head(engine):
    from engine.pipeline import Colorizer
    from engine.suggest import suggest_colors

    photo = gray_photo(96, 128)
    hints = np.zeros((96, 128, 4), np.uint8)
    hints[20, 30] = (30, 60, 220, 255)
    got = engine.client().suggest(photo, (70, 50), hints=[hints], count=5, options={"size": 64})
    want = suggest_colors(Colorizer(), photo, 70, 50, hints, None, 64, 5)
    assert [c["rgb"] for c in got] == [list(c["rgb"]) for c in want]
    np.testing.assert_allclose([c["probability"] for c in got], [c["probability"] for c in want], rtol=1e-4)
    assert len(got) == 5 and got[0]["probability"] >= got[-1]["probability"]


@pytest.mark.parametrize("extra,words", [
    ({"at": [128, 10]}, "outside"),
    ({"at": "70,50"}, "\"at\""),
    ({"at": [70, 50], "count": 0}, "count"),
    ({"at": [70, 50], "options": {"render": 8}}, "size and device only"),
])
def test_bad_suggest_requests_are_refused_with_what_was_wrong(engine, extra, words):
    s = engine.connect()
    hello(s, engine.token)
    frame = image_frame(engine.token, 1, gray_photo(96, 128), options={}, extra=dict({"type": "suggest"}, **extra))
    s.sendall(frame)
    h, _ = read_until(s, 1)
    assert h["type"] == "error" and h["code"] == "bad_request" and words in h["message"], h
    s.close()
