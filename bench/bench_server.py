#!/usr/bin/env python3
"""Engine server speed, memory and robustness. A script, not a test: it prints figures
next to the targets of the engine-server issue (issue 3).

  * round trip through the socket vs the same work in-process, at 1 and 12 MP (target: ratio <= 1.05 at 12 MP)
  * requests per second for 256x256 photos, 1 client and 4 concurrent clients
  * the engine's idle RSS (just started, and again after the big requests)
  * --fuzz N: N inputs (default 100,000) through the frame parser and request checks: no crash, no hang

It starts its own engine (`python -m engine serve`) in private temp folders and talks
to it with the plug-in's client (plugin/tinct_core/client.py).

    python bench/bench_server.py [--sizes 1,12] [--repeat 5] [--fuzz 100000] [--skip-speed]
"""

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "plugin"))
SAMPLE = os.path.join(ROOT, "examples", "great_wall_bw.png")
RATIO_TARGET = 1.05


def synth_photo(mp):
    """A natural-looking gray photo of about `mp` megapixels (the bundled sample, upscaled)."""
    from PIL import Image

    im = Image.open(SAMPLE).convert("L")
    w = int(round((mp * 1e6 * im.width / im.height) ** 0.5))
    h = int(round(mp * 1e6 / w))
    return np.asarray(im.resize((w, h), Image.BICUBIC))


def cpu_self():
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(pid):
    """CPU seconds (user + system, all threads) a process has used so far."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class PrivateEngine:
    """`python -m engine serve` with its own runtime/config folders (never the user's engine)."""

    def __init__(self):
        self.home = tempfile.mkdtemp(prefix="tb-", dir="/tmp")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TINCT_")}
        self.env.update(XDG_RUNTIME_DIR=os.path.join(self.home, "run"), XDG_CONFIG_HOME=os.path.join(self.home, "cfg"),
                        TINCT_ENGINE_CONFIG=os.path.join(self.home, "cfg", "tinct", "engine.json"))
        os.makedirs(self.env["XDG_RUNTIME_DIR"], mode=0o700)
        t = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.ready = self.proc.stdout.readline().strip()
        self.start_s = time.perf_counter() - t
        if not self.ready.startswith("tinct engine ready"):
            raise SystemExit("engine did not start: %r" % self.ready)

    def client(self):
        from tinct_core import client, config

        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            cfg = config.load()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return client.EngineClient(config=cfg, autostart=False, timeout=600)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def round_trip(engine, sizes, repeat):
    from engine.pipeline import Colorizer

    colorizer = Colorizer()
    colorizer.colorize(np.zeros((256, 256), np.uint8)).render(8)  # warm: model loaded
    client = engine.client()
    client.colorize(photo=np.zeros((256, 256), np.uint8), options={"render": 8})
    rows = []
    for mp in sizes:
        photo = synth_photo(mp)
        local, remote, server_work, local_cpu, remote_cpu = [], [], [], [], []
        pid = engine.proc.pid
        def run_local():
            t, c = time.perf_counter(), cpu_self()
            out = colorizer.colorize(photo).render(8)
            local.append(time.perf_counter() - t)
            local_cpu.append(cpu_self() - c)
            return out

        def run_socket():
            t, c, ce = time.perf_counter(), cpu_self(), cpu_of(pid)
            res = client.colorize(photo=photo, options={"render": 8})
            out = np.frombuffer(res["rgb"]["data"], np.uint8).reshape(photo.shape + (3,))
            remote.append(time.perf_counter() - t)
            remote_cpu.append(cpu_self() - c + cpu_of(pid) - ce)
            info = res["info"]
            server_work.append(info["compose_s"] + info["colorize_s"] + info["render_s"])
            return out

        for i in range(repeat):  # pairs in A-B, B-A order, so drifting background load hits both alike
            if i % 2 == 0:
                want, got = run_local(), run_socket()
            else:
                got, want = run_socket(), run_local()
        assert np.array_equal(got, want), "socket and in-process results differ"
        rows.append({"mp": round(photo.size / 1e6, 2), "shape": list(photo.shape),
                     "in_process_s": float(np.median(local)), "socket_s": float(np.median(remote)),
                     "ratio_median": float(np.median(np.array(remote) / np.array(local))),
                     "ratio_best": float(min(remote) / min(local)),
                     "socket_overhead_s": float(np.median(np.array(remote) - np.array(server_work))),
                     "cpu_ratio": float(np.median(remote_cpu) / np.median(local_cpu)),
                     "overhead_ratio": float(1 + np.median(np.array(remote) - np.array(server_work)) /
                                             np.median(local)),
                     "bytes_each_way": [int(photo.nbytes), int(got.nbytes)]})
    return rows


def throughput(engine, clients, per_client, side=256):
    photos = [np.ascontiguousarray(synth_photo(side * side / 1e6)[:side, :side]) for _ in range(clients)]
    errors = []

    def work(i):
        c = engine.client()
        for _ in range(per_client):
            try:
                c.colorize(photo=photos[i], options={"render": 8})
            except Exception as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    if errors:
        raise SystemExit("%d requests failed, first: %s" % (len(errors), errors[0]))
    return clients * per_client / wall


def in_process_rate(n, side=256):
    from engine.pipeline import Colorizer

    c = Colorizer()
    photo = np.ascontiguousarray(synth_photo(side * side / 1e6)[:side, :side])
    c.colorize(photo).render(8)
    t = time.perf_counter()
    for _ in range(n):
        c.colorize(photo).render(8)
    return n / (time.perf_counter() - t)


# ---- fuzz ----

class Hang(Exception):
    pass


def fuzz(n, seed=0, hang_s=2.0):
    """n inputs through read_frame + check_request (+ hint composition for accepted requests)."""
    from engine.hints import compose_hint_layers
    from engine.server.framing import BytesStream, FrameError, Limits, read_frame
    from engine.server.protocol import ProtocolError, check_request, place_mask

    rng = random.Random(seed)
    token = "cd" * 32
    limits = Limits(max_frame=1 << 20, max_header=1 << 16)

    def pack(header, payload=b"", header_bytes=None):
        raw = header_bytes if header_bytes is not None else json.dumps(header).encode("utf-8")
        return struct.pack(">4sIQ", b"TNCT", len(raw), len(payload)) + raw + payload

    def valid():
        h, w = rng.randint(1, 40), rng.randint(1, 40)
        hh, hw = rng.randint(1, 12), rng.randint(1, 12)
        bufs = [{"dtype": rng.choice(["uint8", "uint16", "float32"]), "shape": [h, w] + rng.choice([[], [1], [3]])},
                {"dtype": "uint8", "shape": [hh, hw, 4]}, {"dtype": "uint8", "shape": [h, w]}]
        size = {"uint8": 1, "uint16": 2, "float32": 4}
        payload = b"".join(bytes(rng.getrandbits(8) for _ in range(int(np.prod(b["shape"])) * size[b["dtype"]]))
                           for b in bufs)
        header = {"type": "colorize", "id": rng.randint(0, 9), "token": token, "photo": {"buffer": 0},
                  "hints": [{"buffer": 1, "x": rng.randint(-15, 45), "y": rng.randint(-15, 45),
                             "opacity": rng.random()}],
                  "damage": {"buffer": 2}, "options": {"render": rng.choice([8, 16]), "size": rng.randint(16, 64)},
                  "buffers": bufs}
        return header, payload

    def mutate_bytes(data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            if op < 0.5 and data:
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            elif op < 0.7:
                data[rng.randrange(len(data) + 1):rng.randrange(len(data) + 1)] = os.urandom(rng.randint(1, 8))
            elif op < 0.9 and data:
                del data[rng.randrange(len(data)):]
            else:
                pos = rng.randrange(max(1, len(data)))
                data[pos:pos] = data[:rng.randint(0, 32)]
        return bytes(data)

    weird = [None, True, -1, 2 ** 63, 1.5, "x", [], {}, [2 ** 31, 2], {"buffer": 7}, "float64", [[1]]]

    def mutate_header(header):
        header = json.loads(json.dumps(header))
        for _ in range(rng.randint(1, 3)):
            target = rng.choice(dict_nodes(header))
            key = rng.choice(list(target) + ["x", "y", "shape", "dtype", "buffer", "instances", "type", "id"])
            if rng.random() < 0.2:
                target.pop(key, None)
            else:
                target[key] = json.loads(json.dumps(rng.choice(weird)))  # a fresh copy: no cycles
        return header

    def dict_nodes(obj):
        out = [obj] if isinstance(obj, dict) else []
        for v in (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []):
            out += dict_nodes(v)
        return out

    def make():
        kind = rng.random()
        if kind < 0.15:
            return os.urandom(rng.randint(0, 300))
        header, payload = valid()
        if kind < 0.55:
            return mutate_bytes(pack(header, payload))
        if kind < 0.9:
            return pack(mutate_header(header), payload)
        return pack(None, payload, header_bytes=mutate_bytes(json.dumps(header).encode("utf-8")))

    def on_alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    outcomes, crashes, hangs, slowest = {}, [], 0, 0.0
    t_all = time.perf_counter()
    for i in range(n):
        data = make()
        t = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, hang_s)
        try:
            frame = read_frame(BytesStream(data), limits)
            if frame is None:
                out = "eof"
            else:
                kind, rid, req = check_request(frame, token, True, 1 << 16)
                out = "accepted " + kind
                if req is not None:
                    if req.hints:
                        compose_hint_layers(req.hints, req.height, req.width)
                    for m, x, y in req.instances + ([req.damage] if req.damage else []):
                        place_mask(m, x, y, req.height, req.width)
        except FrameError as exc:
            out = "frame error: " + exc.code
        except ProtocolError as exc:
            out = "refused: " + exc.code
        except Hang:
            hangs += 1
            out = "HANG"
        except Exception as exc:  # a bug: the engine would have answered with an internal error
            import traceback

            where = traceback.extract_tb(exc.__traceback__)[-1]
            crashes.append(("%s at %s:%d" % (type(exc).__name__, os.path.basename(where.filename), where.lineno),
                            str(exc)[:200], data[:200]))
            out = "CRASH"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t)
        outcomes[out] = outcomes.get(out, 0) + 1
    return {"inputs": n, "seconds": time.perf_counter() - t_all, "slowest_input_ms": slowest * 1000,
            "crashes": len(crashes), "hangs": hangs,
            "first_crashes": list({c[0]: c for c in crashes}.values())[:10],  # one per distinct site
            "outcomes": dict(sorted(outcomes.items(), key=lambda kv: -kv[1]))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,12", help="megapixels for the round trip (default 1,12)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--requests", type=int, default=12, help="256x256 requests per client (default 12)")
    ap.add_argument("--fuzz", type=int, nargs="?", const=100_000, default=0, metavar="N",
                    help="also fuzz the frame parser with N inputs (default 100,000)")
    ap.add_argument("--skip-speed", action="store_true", help="only the fuzz")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    figures = {"cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    if not args.skip_speed:
        engine = PrivateEngine()
        try:
            pid = engine.proc.pid
            print(engine.ready)
            print("engine start-up (to the readiness line): %.2f s" % engine.start_s)
            time.sleep(1.0)
            figures["idle_rss_mb_fresh"] = rss_mb(pid)
            print("engine idle RSS, just started (model loaded):     %.0f MB" % figures["idle_rss_mb_fresh"])
            rows = round_trip(engine, [float(s) for s in args.sizes.split(",")], args.repeat)
            figures["round_trip"] = rows
            print("\nround trip, gray uint8 photo -> RGB uint8 rendering (%d pairs, median):" % args.repeat)
            print("  %6s  %12s  %10s  %8s  %11s  %9s  %10s  %14s  %s" % (
                "MP", "in-process", "socket", "ratio", "ratio(best)", "CPU ratio", "transfer", "overhead ratio",
                "target"))
            for r in rows:
                target = "<= %.2f %s" % (RATIO_TARGET, "ok" if r["ratio_median"] <= RATIO_TARGET else "MISSED") \
                    if r["mp"] >= 10 else ""
                print("  %6.2f  %10.3f s  %8.3f s  %8.3f  %11.3f  %9.3f  %8.3f s  %14.3f  %s" % (
                    r["mp"], r["in_process_s"], r["socket_s"], r["ratio_median"], r["ratio_best"], r["cpu_ratio"],
                    r["socket_overhead_s"], r["overhead_ratio"], target))
            print("  ratio: median over pairs of socket / in-process wall time; CPU ratio: engine + client CPU seconds over\n"
                  "  in-process CPU seconds; transfer: socket wall time minus the engine's own work (connect,\n"
                  "  hello, sending and receiving the pixels); overhead ratio: (in-process + transfer) / in-process,\n"
                  "  the ratio without the noise of other processes on the machine (load average now %.1f on %d CPUs)"
                  % (os.getloadavg()[0], os.cpu_count()))
            time.sleep(8)  # the engine hands freed memory back after 5 s idle (checked every 2 s)
            figures["idle_rss_mb_after"] = rss_mb(pid)
            print("engine idle RSS after the big requests:           %.0f MB" % figures["idle_rss_mb_after"])
            figures["rps_in_process"] = in_process_rate(args.requests)
            figures["rps_1_client"] = throughput(engine, 1, args.requests)
            figures["rps_4_clients"] = throughput(engine, 4, args.requests)
            print("\n256x256 requests per second: in-process %.2f, 1 client %.2f, 4 concurrent clients %.2f"
                  % (figures["rps_in_process"], figures["rps_1_client"], figures["rps_4_clients"]))
        finally:
            engine.stop()
    if args.fuzz:
        print("\nfuzzing the frame parser with %d inputs ..." % args.fuzz, flush=True)
        f = fuzz(args.fuzz)
        figures["fuzz"] = f
        print("  %d inputs in %.1f s, slowest %.1f ms; crashes: %d, hangs: %d" % (
            f["inputs"], f["seconds"], f["slowest_input_ms"], f["crashes"], f["hangs"]))
        for name, count in f["outcomes"].items():
            print("    %7d  %s" % (count, name))
        for c in f["first_crashes"]:
            print("  CRASH %s: %s  input %r" % c)
        if f["crashes"] or f["hangs"]:
            return 1
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
