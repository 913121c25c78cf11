import numpy as np

from engine.upsample import BilinearRows, area_matrix, guided_coefficients


def test_area_matrix_rows_average():
    m = area_matrix(3, 10)
    assert np.allclose(m.sum(1), 1)
    x = np.arange(10, dtype=np.float32)
    assert np.allclose(m @ x, [1.2, 4.5, 7.8], atol=1e-5)


def test_guided_upsampling_follows_the_full_resolution_edge():
    """A color boundary placed by L at full resolution must stay sharp after upsampling,
    where a plain bilinear resize of the low-resolution ab smears it over several pixels."""
    H, W, h, w = 256, 256, 32, 32
    edge = 131  # not on the low-resolution grid
    l_full = np.where(np.arange(W)[None, :] < edge, 30.0, 80.0).astype(np.float32).repeat(H, 0)
    ab_full = np.zeros((H, W, 2), np.float32)
    ab_full[:, :edge] = (40, 20)
    ab_full[:, edge:] = (-30, 50)
    # the network's view: area-reduced L and ab
    mh, mw = area_matrix(h, H), area_matrix(w, W)
    l_low = mh @ l_full @ mw.T
    ab_low = np.stack([mh @ ab_full[..., k] @ mw.T for k in range(2)], -1)
    a, b = guided_coefficients(l_low, ab_low)
    s = BilinearRows(h, w, H, W)
    guided = s.rows(a, 0, H) * l_full[..., None] + s.rows(b, 0, H)
    plain = s.rows(ab_low, 0, H)
    band = slice(edge - 6, edge + 6)
    err_guided = np.abs(guided[:, band] - ab_full[:, band]).mean()
    err_plain = np.abs(plain[:, band] - ab_full[:, band]).mean()
    assert err_guided < 0.25 * err_plain
    assert np.abs(guided - ab_full).max() < 12


def test_bilinear_rows_by_strips_equals_whole():
    small = np.random.default_rng(0).normal(size=(10, 14, 2)).astype(np.float32)
    s = BilinearRows(10, 14, 97, 131)
    whole = s.rows(small, 0, 97)
    parts = np.concatenate([s.rows(small, y, min(97, y + 20)) for y in range(0, 97, 20)])
    assert np.array_equal(whole, parts)
