#!/usr/bin/env python3
"""The colorization window's edit loop (issue 20): the time from an edit to its new preview.
A script, not a test: it prints figures next to the target (<= 150 ms at 256², warm).

It runs `tinct ui --serve` on the bundled sample, cropped square and enlarged to a scan-like
size (the preview is at the working size, 256x256 here, whatever the photo's size), with an engine of its own in private temp
folders, and measures what the page does on an edit: POST the points to api/preview and
read the RGB preview back. Warm: after a few previews, as when a user is at work.

  * edit -> preview: median and 90th percentile over --edits edits (a point dragged along)
  * of which the engine's colorize (the server's X-Preview-Ms) vs the rest (HTTP, hint image, rendering)
  * coalescing: --burst edits sent at once; how many were superseded, and how long until the
    newest one's preview was back (no queue: about one or two previews, not --burst of them)

    python bench/bench_ui.py [--edits 40] [--burst 10] [--megapixels 6]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "examples", "great_wall_bw.png")
TARGET_MS = 150


class Page:
    """What the page sends, over one keep-alive connection like a browser's."""

    def __init__(self, url):
        hostport, self.key = url.split("/")[2], url.split("/")[3]
        self.host, self.port = hostport.split(":")
        self.conn = http.client.HTTPConnection(self.host, int(self.port), timeout=120)

    def get(self, name):
        self.conn.request("GET", "/%s/api/%s" % (self.key, name))
        resp = self.conn.getresponse()
        return json.loads(resp.read())

    def preview(self, points, generation, conn=None):
        conn = conn or self.conn
        body = json.dumps({"points": points, "saturation": 1.0, "reference": 0, "generation": generation})
        conn.request("POST", "/%s/api/preview" % self.key, body=body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, resp.getheader("X-Preview-Ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--burst", type=int, default=10)
    ap.add_argument("--megapixels", type=float, default=6.0, help="size of the photo opened (default 6 MP)")
    args = ap.parse_args()

    from PIL import Image

    folder = tempfile.mkdtemp(prefix="bench-ui-")
    runtime = os.path.join(folder, "run")
    os.makedirs(runtime, mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINCT_", "XDG_"))}
    env.update(XDG_RUNTIME_DIR=runtime, XDG_CONFIG_HOME=os.path.join(folder, "config"), PYTHONUNBUFFERED="1")
    im = Image.open(SAMPLE).convert("L")
    side = min(im.size)   # square, so that the preview is the target's 256x256
    im = im.crop(((im.width - side) // 2, (im.height - side) // 2, (im.width + side) // 2, (im.height + side) // 2))
    scale = (args.megapixels * 1e6 / (im.width * im.height)) ** 0.5
    W, H = int(im.width * scale), int(im.height * scale)
    photo = os.path.join(folder, "scan.png")
    im.resize((W, H), Image.BICUBIC).save(photo)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "ui", "--serve", photo], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[2]
        page = Page(url)
        while not page.get("health")["ok"]:
            time.sleep(0.2)
        state = page.get("state")
        print("photo %dx%d (%.1f MP), preview %dx%d, engine on %s, %d CPU cores" % (
            W, H, W * H / 1e6, state["preview_width"], state["preview_height"], state["engine"]["device"],
            os.cpu_count()))
        gen = [int(time.time() * 1000)]

        def edit(i):
            gen[0] += 1
            pts = [{"x": W // 4, "y": H // 3, "rgb": [40, 90, 200]},
                   {"x": (W // 3 + i * W // (3 * args.edits)) % W, "y": 2 * H // 3, "rgb": [200, 60, 40]}]
            return pts, gen[0]

        for i in range(3):  # warm: model, caches, connection
            page.preview(*edit(i))
        totals, engine = [], []
        for i in range(args.edits):
            pts, g = edit(i)
            t0 = time.perf_counter()
            status, data, ms = page.preview(pts, g)
            totals.append(1000 * (time.perf_counter() - t0))
            assert status == 200 and len(data) == state["preview_width"] * state["preview_height"] * 3, status
            engine.append(float(ms))
        med, p90 = np.median(totals), np.percentile(totals, 90)
        print("edit -> preview: median %.0f ms, p90 %.0f ms over %d edits (target <= %d ms: %s)" % (
            med, p90, args.edits, TARGET_MS, "met" if med <= TARGET_MS else "NOT met"))
        print("  of which the engine's colorize round trip: median %.0f ms; the rest (HTTP, hints, rendering): "
              "%.0f ms" % (np.median(engine), med - np.median(engine)))

        results = []

        def send(i):
            conn = http.client.HTTPConnection(page.host, int(page.port), timeout=120)
            pts, g = edit(i)
            status, _, _ = page.preview(pts, g, conn)
            results.append((g, status, time.perf_counter()))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=send, args=(i,)) for i in range(args.burst)]
        for t in threads:
            t.start()
            time.sleep(0.002)   # keystroke-fast, in order
        for t in threads:
            t.join()
        newest = max(results)
        rendered = sum(1 for r in results if r[1] == 200)
        print("burst of %d edits: %d rendered, %d superseded; the newest's preview after %.0f ms (%s)" % (
            args.burst, rendered, args.burst - rendered, 1000 * (newest[2] - t0),
            "its own" if newest[1] == 200 else "status %d" % newest[1]))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        subprocess.run([sys.executable, "-m", "engine", "stop"], env=env, cwd=ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
