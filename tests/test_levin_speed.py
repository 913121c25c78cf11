"""propagate_hints keeps each photo's Levin systems between hint edits (engine.levin._Photo):
a repeat call on the same L must give what a fresh computation gives, whatever the hints."""

import threading

import numpy as np
import pytest

from engine import levin
from engine.levin import REACH_LEAK, affinity_system, clear_cache, propagate_hints

AB_TOL, REACH_TOL = 1e-2, 1e-3


def photo(h, w, seed=0):
    """Gradients, a few flat objects with hard edges, film grain: L in 0..100."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    l = 40 + 30 * yy + 10 * np.sin(6 * xx)
    for _ in range(6):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        l[y:y + rng.integers(8, h // 2), x:x + rng.integers(8, w // 2)] = rng.uniform(5, 95)
    return np.clip(l + rng.normal(0, 0.5, l.shape), 0, 100).astype(np.float32)


def dots(h, w, n, seed, size=5):
    rng = np.random.default_rng(seed)
    ab, mask = np.zeros((h, w, 2), np.float32), np.zeros((h, w), np.float32)
    for _ in range(n):
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        ab[y:y + size, x:x + size], mask[y:y + size, x:x + size] = rng.uniform(-110, 110, 2), 1
    return ab, mask


def fresh(l, ab, mask):
    clear_cache()
    try:
        return propagate_hints(l, ab, mask)
    finally:
        clear_cache()


def assert_close(got, want):
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got[..., :2] - want[..., :2]).max() <= AB_TOL
    assert np.abs(got[..., 2] - want[..., 2]).max() <= REACH_TOL


@pytest.fixture(autouse=True)
def empty_cache():
    clear_cache()
    yield
    clear_cache()


def test_repeat_calls_on_one_photo_equal_fresh_ones():
    l = photo(128, 192)
    ab, mask = dots(128, 192, 10, seed=1)
    plus_ab, plus_mask = ab.copy(), mask.copy()
    plus_ab[60:65, 90:95], plus_mask[60:65, 90:95] = (40, -30), 1  # one more dot
    minus_ab, minus_mask = ab.copy(), mask.copy()
    ys, xs = np.nonzero(mask)
    minus_mask[ys[0]:ys[0] + 5, xs[0]:xs[0] + 5] = 0  # one dot wiped
    edits = [(ab, mask), (-ab, mask), (plus_ab, plus_mask), (minus_ab, minus_mask),
             dots(128, 192, 1, seed=2), dots(128, 192, 100, seed=3), (ab, mask)]
    want = [fresh(l, a, m) for a, m in edits]
    for (a, m), expected in zip(edits, want):
        assert_close(propagate_hints(l, a, m), expected)


def test_small_edits_update_the_factorized_systems_instead_of_refactorizing():
    """The point of the cache: one more dot or a recolor keeps the factorizations (a low-rank update)."""
    l = photo(96, 96)
    ab, mask = dots(96, 96, 10, seed=4)
    propagate_hints(l, ab, mask)
    (photo_state,) = levin._cache.values()
    factorized = photo_state.lus
    plus_ab, plus_mask = ab.copy(), mask.copy()
    plus_ab[40:45, 40:45], plus_mask[40:45, 40:45] = (-60, 70), 1
    for a, m in [(0.5 * ab, mask), (plus_ab, plus_mask)]:
        assert_close(propagate_hints(l, a, m), fresh_without_touching(l, a, m))
        assert photo_state.lus is factorized


def fresh_without_touching(l, ab, mask):
    """A fresh computation that leaves the cache as it is."""
    saved = dict(levin._cache)
    try:
        return fresh(l, ab, mask)
    finally:
        levin._cache.update(saved)


def test_the_update_solves_levin_s_systems_exactly():
    """On the coarse grid, against scipy's direct solve of affinity_system (ab) and its leaky twin (reach)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    lc = photo(40, 56)
    state = levin._Photo(lc)
    rng = np.random.default_rng(5)
    ab = rng.uniform(-110, 110, (lc.size, 2))
    base = np.zeros(lc.shape, bool)
    base[10:13, 10:13] = base[30:33, 40:43] = True
    edits = [base, base | np.pad(np.ones((3, 3), bool), ((20, 17), (25, 28))), base & (np.arange(56) < 20)]
    for hinted in edits:
        hinted = hinted.ravel()
        got_ab, got_reach = state.solve(ab, hinted)
        system = affinity_system(lc, hinted.reshape(lc.shape))
        want_ab = spla.spsolve(system.tocsc(), np.where(hinted[:, None], ab, 0.0))
        leaky = (system + sp.diags(REACH_LEAK * ~hinted)).tocsc()
        want_reach = np.clip(spla.spsolve(leaky, hinted.astype(float)), 0, 1)
        assert np.abs(got_ab - want_ab).max() < 1e-6 and np.abs(got_reach - want_reach).max() < 1e-9
    assert state.hinted.reshape(lc.shape)[10, 10] and not state.hinted.reshape(lc.shape)[21, 26]  # kept the base


def test_another_photo_does_not_reuse_the_first_one_s_systems():
    l1 = photo(64, 80, seed=6)
    l2 = l1.copy()
    l2[30:34, 40:44] += 20  # the same photo but one small patch
    ab, mask = dots(64, 80, 3, seed=7)
    first = propagate_hints(l1, ab, mask)
    second = propagate_hints(l2, ab, mask)
    assert len(levin._cache) == 2
    assert_close(second, fresh(l2, ab, mask))
    assert np.abs(first - second).max() > 0  # not served from l1's entry


def test_the_cache_is_bounded():
    ab, mask = dots(48, 48, 2, seed=8)
    for seed in range(levin._CACHE_SIZE + 3):
        propagate_hints(photo(48, 48, seed), ab, mask)
    assert len(levin._cache) == levin._CACHE_SIZE


def test_the_cache_keeps_only_the_latest_photo_past_its_memory_budget(monkeypatch):
    monkeypatch.setattr(levin, "_CACHE_BYTES", 1)
    ab, mask = dots(48, 48, 2, seed=8)
    for seed in range(3):
        propagate_hints(photo(48, 48, seed), ab, mask)
    assert len(levin._cache) == 1


@pytest.mark.parametrize("case", ["corners", "one_pixel", "full_rows", "last_row_odd_size", "everything"])
def test_edge_cases_equal_fresh_computations(case):
    h, w = (41, 57) if case == "last_row_odd_size" else (64, 64)  # a coarse row: 32 cells
    l = photo(h, w, seed=9)
    ab, mask = dots(h, w, 4, seed=10)
    propagate_hints(l, ab, mask)  # the factorized base the edit below is an update of
    ab, mask = ab.copy(), mask.copy()
    if case == "corners":
        for y, x in [(0, 0), (0, w - 3), (h - 3, 0), (h - 3, w - 3)]:
            ab[y:y + 3, x:x + 3], mask[y:y + 3, x:x + 3] = (70, -20), 1
    elif case == "one_pixel":
        ab[:], mask[:] = 0, 0
        ab[33, 47], mask[33, 47] = (-50, 90), 1
    elif case == "full_rows":
        ab[20:22], mask[20:22] = (10, 60), 1  # one whole coarse row: an update, not a refactorization
    elif case == "last_row_odd_size":
        ab[h - 1, w - 1], mask[h - 1, w - 1] = (30, 30), 1
    else:
        ab[:], mask[:] = np.random.default_rng(11).uniform(-100, 100, ab.shape), 1
    got = propagate_hints(l, ab, mask)
    assert_close(got, fresh(l, ab, mask))
    if case == "everything":
        assert np.allclose(got[..., 2], 1, atol=1e-6)


def test_no_hints_is_zeros_with_a_cached_photo():
    l = photo(64, 64)
    ab, mask = dots(64, 64, 3, seed=12)
    propagate_hints(l, ab, mask)
    assert not propagate_hints(l, ab, np.zeros_like(mask)).any()


def test_threads_on_one_photo_get_their_own_hints_answers():
    l = photo(96, 128, seed=13)
    edits = [dots(96, 128, n, seed=20 + n) for n in (1, 2, 5, 10, 20, 40)]
    want = [fresh(l, a, m) for a, m in edits]
    got = [None] * len(edits)

    def run(i):
        got[i] = propagate_hints(l, *edits[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(edits))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, expected in zip(got, want):
        assert_close(g, expected)
