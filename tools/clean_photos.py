#!/usr/bin/env python3
"""Held-out clean photos for the damage detector's false-alarm check, from Debian's wallpaper packages.

Why: `tinct eval-damage` scores false alarms on clean photos, and the 0.5 % target is read on
val. Choosing a threshold or a stopping point needs the same kind of check on photos that are
neither val nor training photos: the detector trained on every corpus photo, so its false alarms
there read low (engine/weights/MODEL_CARD_DAMAGE.md). Debian ships natural photos as desktop
wallpapers (GPL-2+, CC-BY, CC-BY-SA, CC0; the packages' copyright files are copied alongside), from
the package registry this project may use. They are only scored, never trained on, never committed.

Each photo is written twice, at the sizes val holds: the whole frame at a short side of 288 (as
COCO and the corpus) and a 500 x 500 center crop of the frame scaled to a short side of 500 (as
Kodak24 and McMaster).

    python tools/clean_photos.py runs/clean_photos      # apt-get download + dpkg -x; about 20 s
    tinct eval-damage runs/clean_photos --no-restore --sweep 0.7,0.8,0.9 --damage-model RUN.onnx
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from engine.evaluate import center_crop, scale_short_side

# (Debian package, file under usr/share/, or a Plasma wallpaper's folder whose largest image is taken)
PHOTOS = (
    [("mate-backgrounds", "backgrounds/mate/nature/%s.jpg" % n) for n in (
        "Garden", "Dune", "Wood", "Aqua", "TwoWings", "Storm", "GreenMeadow", "RainDrops", "Blinds",
        "FreshFlower", "LadyBird", "YellowFlower")]
    + [("lomiri-wallpapers-16.04", "backgrounds/%s.jpg" % n) for n in (
        "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "seeding_by_Clements_Engelhardt",
        "aitzgorri_by_Aitzol_Berasategi", "Dragonfly_by_Bolly", "friends_by_Aitzol_Berasategi",
        "sunset_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "Picture_0B_by_freespace",
        "life_by_Aitzol_Berasategi", "Bridge_by_Sander_Klootwijk")]
    + [("lomiri-wallpapers-20.04", "backgrounds/Infinite-Sea_by_Aury88.jpg")]
    + [("plasma-workspace-wallpapers", "wallpapers/%s/" % n) for n in (
        "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
        "OneStandsOut", "Path", "summer_1am")]
)
SIZES = (288, 500)


def _source(root, rel):
    path = os.path.join(root, "usr", "share", rel)
    if rel.endswith("/"):  # a Plasma wallpaper: several resolutions of one photo
        path = max(glob.glob(os.path.join(path, "contents", "images", "*")), key=os.path.getsize)
    return path


def _sized(im, side):
    """288: the whole frame, short side 288; 500: a 500 x 500 center crop at short side 500 (eval's crop)."""
    if side != 288:
        return Image.fromarray(center_crop(np.asarray(im), side))
    return scale_short_side(im, side)


def fetch(out_dir):
    """Download the packages, extract the photos at val's sizes into out_dir; returns the manifest."""
    os.makedirs(os.path.join(out_dir, "licenses"), exist_ok=True)
    manifest = []
    with tempfile.TemporaryDirectory() as tmp:
        packages = sorted(set(p for p, _ in PHOTOS))
        subprocess.run(["apt-get", "download"] + packages, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        debs = {pkg: glob.glob(os.path.join(tmp, pkg + "_*.deb"))[0] for pkg in packages}
        for pkg, deb in debs.items():
            subprocess.run(["dpkg", "-x", deb, os.path.join(tmp, pkg)], check=True)
            shutil.copy(os.path.join(tmp, pkg, "usr", "share", "doc", pkg, "copyright"),
                        os.path.join(out_dir, "licenses", pkg + ".copyright"))
        for pkg, rel in PHOTOS:
            src = _source(os.path.join(tmp, pkg), rel)
            name = rel.rstrip("/").split("/")[-1].rsplit(".", 1)[0]
            with Image.open(src) as im:
                rgb = im.convert("RGB")
            for side in SIZES:
                out = "debian_%s_%d.png" % (name, side)
                _sized(rgb, side).save(os.path.join(out_dir, out))
                manifest.append({"file": out, "package": pkg, "source": os.path.relpath(src, os.path.join(tmp, pkg)),
                                 "deb": os.path.basename(debs[pkg])})
    with open(os.path.join(out_dir, "licenses", "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to write the photos into (e.g. runs/clean_photos)")
    args = p.parse_args(argv)
    n = len(fetch(args.out))
    print("%d photos (%d scenes at %s px) in %s" % (n, len(PHOTOS), " and ".join(map(str, SIZES)), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
