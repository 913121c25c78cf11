"""Simulated damage on old prints, for training the restoration network and for
`tinct eval-restore`: long thin scratches, fold lines, specks and dust, torn or
flaked patches. Masks are 1 where the photo is intact and 0 where it is damaged."""

import math

import numpy as np
from PIL import Image, ImageDraw


class DamageSimulator:
    """Random damage masks (1 = intact, 0 = damaged), drawn like the marks on old prints."""

    def __init__(self, rng, max_damage=0.3):
        self.rng = rng
        self.max_damage = max_damage

    def _scratch(self, draw, h, w):
        """A long thin line that wanders a little: emulsion scratches."""
        x, y = self.rng.uniform(0, w), self.rng.uniform(0, h)
        angle = self.rng.uniform(0, 2 * math.pi)
        width = int(self.rng.choice([1, 1, 2, 2, 3, 4, 6]))
        points = [(x, y)]
        for _ in range(int(self.rng.integers(2, 8))):
            angle += self.rng.normal(0, 0.25)
            step = self.rng.uniform(0.1, 0.4) * max(h, w)
            x, y = x + step * math.cos(angle), y + step * math.sin(angle)
            points.append((x, y))
        draw.line(points, fill=0, width=width, joint="curve")

    def _specks(self, draw, h, w):
        """Dust and mold: many small dots."""
        for _ in range(int(self.rng.integers(5, 60))):
            r = self.rng.uniform(0.5, 3.5)
            x, y = self.rng.uniform(0, w), self.rng.uniform(0, h)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=0)

    def _patch(self, draw, h, w):
        """A torn corner or flaked emulsion: an irregular blob."""
        cx, cy = self.rng.uniform(0, w), self.rng.uniform(0, h)
        radius = self.rng.uniform(0.03, 0.15) * min(h, w)
        n = int(self.rng.integers(6, 14))
        angles = np.sort(self.rng.uniform(0, 2 * math.pi, n))
        radii = radius * self.rng.uniform(0.4, 1.3, n)
        draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)], fill=0)

    def _fold(self, draw, h, w):
        """A crease: a straight line across the print."""
        if self.rng.random() < 0.5:
            x = self.rng.uniform(0, w)
            draw.line([(x + self.rng.normal(0, 4), 0), (x + self.rng.normal(0, 4), h)], fill=0,
                      width=int(self.rng.integers(1, 5)))
        else:
            y = self.rng.uniform(0, h)
            draw.line([(0, y + self.rng.normal(0, 4)), (w, y + self.rng.normal(0, 4))], fill=0,
                      width=int(self.rng.integers(1, 5)))

    KINDS = ("scratch", "specks", "patch", "fold")
    SHARES = (0.45, 0.2, 0.2, 0.15)  # how often each kind is drawn in a mixed mask

    def mask(self, h, w, kind=None):
        """(h, w) float32 mask with 1 to 5 marks of mixed kinds, or of one `kind` (KINDS) only."""
        draws = {"scratch": self._scratch, "specks": self._specks, "patch": self._patch, "fold": self._fold}
        for _ in range(10):
            im = Image.new("L", (w, h), 255)
            draw = ImageDraw.Draw(im)
            for _ in range(int(self.rng.integers(1, 6))):
                name = kind or self.KINDS[int(self.rng.choice(4, p=list(self.SHARES)))]
                draws[name](draw, h, w)
            m = (np.asarray(im) > 127).astype(np.float32)
            if 0.002 < 1.0 - m.mean() <= self.max_damage:
                return m
        return m
