"""Old, damaged prints made from clean photos, with the truth of where the damage is: the
training data of the damage detector (engine/train/damage.py) and the test of `tinct
eval-damage`.

A sample is made in the order the real thing happens, on the lightness L (0..100):
1. content: thin lines that belong to the scene (hair, branches, wires, rigging, text) are
   drawn into the photo, sometimes, as hard negatives: they look like cracks but are not damage;
   or the exposure clips a blown sky or a crushed shadow flat, which looks like torn-off paper;
2. the print ages: faded or sepia tone curve, optical blur, paper texture, film grain;
3. damage lands on the print: branching bright or dark cracks that cross, long scratches,
   dust, specks and fibres, creases, torn or missing corners and edges, flaked patches, stains;
4. the print is scanned: a little blur, JPEG.
Damage therefore sits on top of the grain and the blur of the scene, as on real prints.
The truth mask holds the pixels the damage visibly changed (by VISIBLE in L or more); pixels it
changed by FAINT..VISIBLE are `unsure`: under grain and paper texture nobody can tell them, so
training and `tinct eval-damage` leave them out rather than count them either way.
"""

import io
import math
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

SS = 2  # marks are drawn at twice the size, then reduced: soft, sub-pixel widths
REF = 160  # marks and scene lines are sized in pixels as on a 160-pixel crop, whatever the photo's size:
# a network that sees ~120 pixels around each pixel learns the sizes it will meet at full resolution
VISIBLE = 12.0  # L units a mark must change a pixel by to count as damage
FAINT = 4.0  # from here up to VISIBLE a change is unsure: neither damage nor intact
DAMAGE_KINDS = ("crack", "scratch", "dust", "crease", "tear", "patch", "stain")
DAMAGE_SHARES = (0.3, 0.17, 0.17, 0.09, 0.1, 0.09, 0.08)
NEGATIVE_KINDS = ("hair", "branches", "wires", "rigging", "text", "clipped")


class Canvas:
    """A supersampled coverage canvas for one mark, reduced to (h, w) coverage 0..1."""

    def __init__(self, h, w):
        self.h, self.w = h, w
        self.im = Image.new("L", (w * SS, h * SS), 0)
        self.draw = ImageDraw.Draw(self.im)

    def line(self, points, width):
        self.draw.line([(x * SS, y * SS) for x, y in points], fill=255, width=max(1, int(round(width * SS))),
                       joint="curve")

    def dot(self, x, y, r):
        r = max(r, 0.3) * SS
        self.draw.ellipse([x * SS - r, y * SS - r, x * SS + r, y * SS + r], fill=255)

    def polygon(self, points):
        self.draw.polygon([(x * SS, y * SS) for x, y in points], fill=255)

    def coverage(self):
        return np.asarray(self.im.resize((self.w, self.h), Image.BOX), np.float32) / 255.0


def _walk(rng, x, y, angle, length, step, wiggle):
    """A random walk of `length` pixels: the path of a crack, scratch or hair."""
    points = [(x, y)]
    for _ in range(max(2, int(length / step))):
        angle += rng.normal(0, wiggle)
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        points.append((x, y))
    return points, angle


class DamageSynth:
    """Makes (damaged L, truth mask) from a clean L; one rng drives every choice."""

    def __init__(self, rng, p_clean=0.12, p_negatives=0.5):
        self.rng = rng
        self.p_clean, self.p_negatives = p_clean, p_negatives

    # -- 1. content that is not damage ----------------------------------------------------------
    def _tone(self, l, x, y):
        """A value for a line drawn into the scene: darker or lighter than what it crosses."""
        r = self.rng
        here = float(l[int(np.clip(y, 0, l.shape[0] - 1)), int(np.clip(x, 0, l.shape[1] - 1))])
        return r.uniform(0, 30) if here > 45 or r.random() < 0.3 else r.uniform(70, 100)

    def _hair(self, c, h, w):
        r = self.rng
        x, y, angle = r.uniform(0, w), r.uniform(0, h), r.uniform(0, 2 * math.pi)
        for _ in range(int(r.integers(5, 40))):
            pts, _ = _walk(r, x + r.normal(0, 6), y + r.normal(0, 6), angle + r.normal(0, 0.15),
                           r.uniform(0.2, 0.8) * REF, 3.0, 0.06)
            c.line(pts, r.uniform(0.4, 1.3))

    def _branches(self, c, h, w, x=None, y=None, angle=None, width=None, depth=0):
        r = self.rng
        if x is None:
            x, y, angle, width = r.uniform(0, w), r.uniform(0, h), r.uniform(0, 2 * math.pi), r.uniform(1.5, 5)
        pts, end = _walk(r, x, y, angle, r.uniform(0.15, 0.5) * REF / (1 + depth), 4.0, 0.12)
        c.line(pts, width)
        if depth < 3:
            for _ in range(int(r.integers(1, 4))):
                px, py = pts[int(r.integers(1, len(pts)))]
                self._branches(c, h, w, px, py, end + r.choice([-1, 1]) * r.uniform(0.3, 1.0),
                               max(0.5, width * r.uniform(0.5, 0.8)), depth + 1)

    def _wires(self, c, h, w):
        r = self.rng
        y0, sag, tilt = r.uniform(0, h), r.uniform(-0.2, 0.2) * h, r.uniform(-0.5, 0.5) * h
        for k in range(int(r.integers(1, 5))):
            off = k * r.uniform(3, 12)
            pts = [(t * w, y0 + off + tilt * t + sag * 4 * t * (1 - t)) for t in np.linspace(-0.05, 1.05, 40)]
            c.line(pts, r.uniform(0.5, 2.0))

    def _rigging(self, c, h, w):
        r = self.rng
        ax, ay = r.uniform(0, w), r.uniform(-0.2, 0.5) * h
        for _ in range(int(r.integers(2, 9))):
            bx, by = r.uniform(-0.5, 1.5) * w, r.uniform(0.6, 1.3) * h
            c.line([(ax, ay), (bx, by)], r.uniform(0.5, 1.8))

    def _text(self, c, h, w):
        r = self.rng
        size = int(r.integers(6, 30))
        font = ImageFont.load_default(size=size * SS)
        for _ in range(int(r.integers(1, 4))):
            chars = string.ascii_letters + string.digits + "  .,-"
            text = "".join(r.choice(list(chars), int(r.integers(3, 16))))
            c.draw.text((r.uniform(-0.2, 0.9) * w * SS, r.uniform(0, 0.95) * h * SS), text, fill=255, font=font)

    def clip_exposure(self, l):
        """Over- or under-exposure: the brightest (or darkest) 5-35 % of the scene clipped flat. Why: a
        blown sky is flat, grainless white reaching the border, as torn-off paper is; a detector that
        has seen large tears (256-pixel crops) flagged whole skies of clean photos."""
        r = self.rng
        q = r.uniform(0.05, 0.35)
        if r.random() < 0.7:
            top = max(float(np.quantile(l, 1 - q)), 1.0)
            return np.minimum(l * (100.0 / top), 100.0)
        bottom = min(float(np.quantile(l, q)), 99.0)
        return np.maximum((l - bottom) * (100.0 / (100.0 - bottom)), 0.0)

    def negatives(self, l, kinds=None):
        """Draw 1 to 3 kinds of scene content into l (thin lines, or clipped exposure): not damage."""
        r = self.rng
        h, w = l.shape
        kinds = kinds or [NEGATIVE_KINDS[i] for i in r.choice(len(NEGATIVE_KINDS), int(r.integers(1, 4)))]
        for kind in kinds:
            if kind == "clipped":
                l = self.clip_exposure(l)
                continue
            c = Canvas(h, w)
            getattr(self, "_" + kind)(c, h, w)
            a = c.coverage() * r.uniform(0.6, 1.0)
            x, y = r.uniform(0, w), r.uniform(0, h)
            l = l * (1 - a) + self._tone(l, x, y) * a
        return l

    # -- 2. the aged print --------------------------------------------------------------------
    def age(self, l):
        """Fade or tone the print, blur the scene a little, add paper texture and grain."""
        r = self.rng
        h, w = l.shape
        lo, hi = r.uniform(0, 25) if r.random() < 0.6 else 0.0, r.uniform(75, 100) if r.random() < 0.6 else 100.0
        l = lo + (hi - lo) * (np.clip(l, 0, 100) / 100.0) ** r.uniform(0.7, 1.4) * 1.0
        if r.random() < 0.6:
            l = ndimage.gaussian_filter(l, r.uniform(0.3, 1.3))
        if r.random() < 0.5:  # paper: slow blotches and fine fibres
            slow = ndimage.gaussian_filter(r.normal(0, 1, (h, w)), r.uniform(6, 30))
            l = l + slow / (slow.std() + 1e-6) * r.uniform(0, 4)
            l = l + ndimage.gaussian_filter(r.normal(0, 1, (h, w)), 0.8) * r.uniform(0, 3)
        if r.random() < 0.7:  # grain
            g = r.normal(0, 1, (h, w))
            if r.random() < 0.5:
                g = ndimage.gaussian_filter(g, r.uniform(0.5, 1.0))
                g /= g.std() + 1e-6
            l = l + g * r.uniform(0.5, 5)
        return np.clip(l, 0, 100).astype(np.float32)

    # -- 3. damage ------------------------------------------------------------------------------
    def _crack(self, c, h, w):
        """Branching cracks that cross: jagged walks that split."""
        r = self.rng
        stack = [(r.uniform(0, w), r.uniform(0, h), r.uniform(0, 2 * math.pi), r.uniform(0.4, 1.6), 0)]
        while stack:
            x, y, angle, width, depth = stack.pop()
            pts, end = _walk(r, x, y, angle, r.uniform(0.1, 0.6) * REF / (1 + 0.5 * depth),
                             r.uniform(1.5, 4), r.uniform(0.15, 0.5))
            c.line(pts, width)
            if depth < 3:
                for _ in range(int(r.integers(0, 3))):
                    px, py = pts[int(r.integers(1, len(pts)))]
                    stack.append((px, py, end + r.choice([-1, 1]) * r.uniform(0.4, 1.4), max(0.4, width * 0.8),
                                  depth + 1))

    def _scratch(self, c, h, w):
        r = self.rng
        pts, _ = _walk(r, r.uniform(0, w), r.uniform(0, h), r.uniform(0, 2 * math.pi),
                       r.uniform(0.4, 1.5) * REF, r.uniform(8, 20), r.uniform(0.0, 0.05))
        c.line(pts, r.uniform(0.4, 2.5))

    def _dust(self, c, h, w):
        r = self.rng
        for _ in range(int(r.integers(3, 60))):
            c.dot(r.uniform(0, w), r.uniform(0, h), r.exponential(0.8) + 0.3)
        for _ in range(int(r.integers(0, 4))):  # fibres and lint on the print or the scanner glass
            pts, _ = _walk(r, r.uniform(0, w), r.uniform(0, h), r.uniform(0, 2 * math.pi), r.uniform(5, 40), 1.5,
                           r.uniform(0.2, 0.6))
            c.line(pts, r.uniform(0.4, 1.2))

    def _crease(self, c, h, w):
        r = self.rng
        if r.random() < 0.5:
            x = r.uniform(0, w)
            pts = [(x + r.normal(0, 3) + t * r.normal(0, 10), t * h) for t in np.linspace(-0.05, 1.05, 12)]
        else:
            y = r.uniform(0, h)
            pts = [(t * w, y + r.normal(0, 3) + t * r.normal(0, 10)) for t in np.linspace(-0.05, 1.05, 12)]
        c.line(pts, r.uniform(1.5, 6))

    def _tear(self, c, h, w):
        """A torn or missing corner or strip of edge: a jagged region from the border."""
        r = self.rng
        side = int(r.integers(4))
        depth = r.uniform(0.04, 0.3) * REF
        n = int(r.integers(8, 30))
        if r.random() < 0.5:  # a corner
            a, b = r.uniform(0.1, 0.5) * min(w, 2 * REF), r.uniform(0.1, 0.5) * min(h, 2 * REF)
            corner = [(0, 0), (w, 0), (w, h), (0, h)][side]
            sx, sy = (1 if corner[0] == 0 else -1), (1 if corner[1] == 0 else -1)
            pts = [(corner[0] + sx * (a * (1 - t) + r.normal(0, 2)), corner[1] + sy * (b * t + r.normal(0, 2)))
                   for t in np.linspace(0, 1, n)]
            c.polygon([(corner[0] - sx * 2, corner[1] - sy * 2)] + pts)
            return
        t0, t1 = sorted(r.uniform(-0.2, 1.2, 2))
        ts = np.linspace(t0, t1, n)
        ds = depth * np.clip(np.sin(np.linspace(0, math.pi, n)) + r.normal(0, 0.15, n), 0, None)
        if side == 0:
            pts = [(t * w, d) for t, d in zip(ts, ds)] + [(t1 * w, -2), (t0 * w, -2)]
        elif side == 1:
            pts = [(t * w, h - d) for t, d in zip(ts, ds)] + [(t1 * w, h + 2), (t0 * w, h + 2)]
        elif side == 2:
            pts = [(d, t * h) for t, d in zip(ts, ds)] + [(-2, t1 * h), (-2, t0 * h)]
        else:
            pts = [(w - d, t * h) for t, d in zip(ts, ds)] + [(w + 2, t1 * h), (w + 2, t0 * h)]
        c.polygon(pts)

    def _patch(self, c, h, w):
        """Flaked emulsion: an irregular blob."""
        r = self.rng
        cx, cy, radius = r.uniform(0, w), r.uniform(0, h), r.uniform(0.01, 0.1) * REF + 1
        n = int(r.integers(6, 14))
        angles = np.sort(r.uniform(0, 2 * math.pi, n))
        radii = radius * r.uniform(0.4, 1.3, n)
        c.polygon([(cx + q * math.cos(a), cy + q * math.sin(a)) for a, q in zip(angles, radii)])

    def _stain(self, l):
        """A water or foxing stain: a smooth darker blob with a darker rim; (l, its strength 0..1)."""
        r = self.rng
        h, w = l.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy, rad = r.uniform(0, w), r.uniform(0, h), r.uniform(0.05, 0.3) * REF + 2
        wob = ndimage.gaussian_filter(r.normal(0, 1, (h, w)), rad / 3)
        dist = np.hypot(xx - cx, yy - cy) / rad + wob / (wob.std() + 1e-6) * 0.15
        body = np.clip(1.2 - dist, 0, 1)
        rim = np.exp(-((dist - 1.0) / 0.06) ** 2)
        strength = np.clip(body * r.uniform(0.2, 0.6) + rim * r.uniform(0.2, 0.6), 0, 1)
        tone = r.uniform(20, 60)
        return l * (1 - strength) + tone * strength, strength

    def damage(self, l, kinds=None):
        """Draw damage on the aged print; returns (damaged l, truth mask bool, unsure mask bool)."""
        r = self.rng
        h, w = l.shape
        truth = np.zeros((h, w), bool)
        changed = np.zeros((h, w), bool)
        if kinds is None:
            kinds = [DAMAGE_KINDS[i] for i in r.choice(len(DAMAGE_KINDS), int(r.integers(1, 6)),
                                                       p=list(DAMAGE_SHARES))]
        for kind in kinds:
            if kind == "stain":
                new, _ = self._stain(l)
            else:
                c = Canvas(h, w)
                getattr(self, "_" + kind)(c, h, w)
                a = c.coverage()
                if kind in ("tear",):
                    value = r.uniform(85, 100) if r.random() < 0.7 else r.uniform(0, 12)
                elif kind in ("crease",) or r.random() < 0.7:
                    value = r.uniform(75, 100)
                else:
                    value = r.uniform(0, 20)
                opacity = 1.0 if kind in ("tear", "patch") else r.uniform(0.6, 1.0)
                new = l * (1 - a * opacity) + value * a * opacity
                if kind == "crease" and r.random() < 0.7:  # a shadow beside the fold line
                    new = new - ndimage.shift(a, (r.choice([-2, 2]), r.choice([-2, 2])), order=0) * (1 - a) * r.uniform(5, 20)
                if kind in ("tear", "patch") and r.random() < 0.5:  # paper fibres at the torn edge
                    edge = np.clip(ndimage.maximum_filter(a, 3) - a, 0, 1) * r.uniform(0, 1, a.shape)
                    new = new * (1 - edge) + 95 * edge
            diff = np.abs(new - l)
            truth |= diff >= VISIBLE
            changed |= diff >= FAINT
            l = np.clip(new, 0, 100).astype(np.float32)
        return l, truth, changed & ~truth

    # -- 4. the scan --------------------------------------------------------------------------
    def scan_settings(self):
        """The scanner's blur sigma and JPEG quality (0 = none), drawn once per print."""
        r = self.rng
        return (r.uniform(0.2, 0.6) if r.random() < 0.4 else 0.0), (int(r.integers(40, 96)) if r.random() < 0.5 else 0)

    @staticmethod
    def scan(l, settings):
        blur, quality = settings
        if blur:
            l = ndimage.gaussian_filter(l, blur)
        if quality:
            buf = io.BytesIO()
            Image.fromarray(np.clip(np.round(l * 2.55), 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
            l = np.asarray(Image.open(buf), np.float32) / 2.55
        return np.asarray(l, np.float32)

    def sample(self, l, damaged=None, negatives=None, kinds=None, reference=False, unsure=False, aged=True):
        """Clean L -> (old, damaged, scanned L; truth mask), and with reference=True also the same
        old print scanned the same way without its damage (what a perfect restoration gives).
        damaged/negatives None: drawn at random; negatives may also name NEGATIVE_KINDS to draw.
        unsure=True: the unsure mask follows the truth. aged=False: a sharp, clean print (a modern
        photo or a good scan), on which fine high-contrast detail must not read as damage."""
        r = self.rng
        if isinstance(negatives, (list, tuple)):
            l = self.negatives(l, list(negatives))
        elif negatives if negatives is not None else r.random() < self.p_negatives:
            l = self.negatives(l)
        if aged:
            l = self.age(l)
        else:
            l = np.clip(l, 0, 100).astype(np.float32)
        truth = faint = np.zeros(l.shape, bool)
        old = l
        if damaged if damaged is not None else r.random() >= self.p_clean:
            l, truth, faint = self.damage(l, kinds)
        settings = self.scan_settings()
        out = (self.scan(l, settings), truth) + ((faint,) if unsure else ())
        return out + (self.scan(old, settings),) if reference else out
