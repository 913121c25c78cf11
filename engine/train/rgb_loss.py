"""A regression loss measured where `tinct eval` measures: squared error in 8-bit sRGB.

Huber on ab (the default) behaves like L1 for the large errors that dominate colorization,
so it pulls each pixel toward the *median* color of what it could be. PSNR rewards the
*mean*, and it weighs an ab error by how much it changes the displayed RGB, which depends on
L and on the gamut's edge (the same error costs about 40 % less at L = 15 than at L = 70, and
nothing where both colors clip to the same RGB). This loss converts the photo's L with the
predicted and the true ab to sRGB, exactly as engine/color.py does, and takes the mean squared
difference in 0-255 units.
"""

import torch

from ..color import _EPS, _KAPPA, WHITE_D65, XYZ_TO_RGB

# Lab f-space -> linear RGB, with the D65 white folded in (as engine.color.lab_to_linear)
_XYZ_TO_LINEAR = torch.tensor(XYZ_TO_RGB * WHITE_D65[None, :], dtype=torch.float32)
# scale that keeps this loss's gradients about as large as Huber's (delta 5) on typical errors
RGB_SCALE = 50.0


def _f_inv(f):
    f3 = f * f * f
    return torch.where(f3 > _EPS, f3, (116.0 * f - 16.0) / _KAPPA)


def lab_to_srgb(l, ab):
    """l (N,1,H,W) in 0..100, ab (N,2,H,W) -> sRGB (N,3,H,W) in [0, 1], clipped to the gamut."""
    fy = (l + 16.0) / 116.0
    fx = fy + ab[:, :1] / 500.0
    fz = fy - ab[:, 1:] / 200.0
    xyz = torch.cat([_f_inv(fx), _f_inv(fy), _f_inv(fz)], dim=1)
    lin = torch.einsum("rc,nchw->nrhw", _XYZ_TO_LINEAR.to(xyz.device), xyz)
    lin = lin.clamp(0.0, 1.0)
    srgb = torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    return srgb.clamp(0.0, 1.0)


def rgb_mse(l, ab_pred, ab_true):
    """Mean squared sRGB error in 0-255 units, divided by RGB_SCALE."""
    diff = (lab_to_srgb(l, ab_pred) - lab_to_srgb(l, ab_true)) * 255.0
    return diff.pow(2).mean() / RGB_SCALE
