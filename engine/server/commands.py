"""`tinct serve`, `tinct status`, `tinct stop`, and the engine path of `tinct colorize --engine`.

status, stop and --engine use the plug-in's own client (plugin/tinct_core/client.py),
so the command line exercises exactly what GIMP runs.
"""

import argparse
import json
import os
import sys
import time

from .. import TinctError

PLUGIN_DIR_ENV = "TINCT_PLUGIN_DIR"


def register(sub):
    p = sub.add_parser(
        "serve", help="run the engine the GIMP plug-in talks to",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run Tinct's engine: it loads the model once and colorizes requests from the GIMP plug-in "
                    "(or `tinct colorize --engine`) over a user-only local socket. The plug-in starts it by "
                    "itself when needed; run it by hand to watch its log.",
        epilog="""examples:
  tinct serve                       Unix socket at $XDG_RUNTIME_DIR/tinct/engine.sock (or engine.json's)
  tinct serve --port 47821          TCP on 127.0.0.1 only (the default on Windows)
  tinct status                      is it running? what is it doing?
  tinct stop

It prints one line "tinct engine ready on ..." once it accepts connections.
Every request must carry the token written to the token file (0600); only one
engine runs per user.""")
    add_address(p)
    p.add_argument("--model", metavar="ONNX", help="serve another ONNX model instead of the shipped one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default: the GPU when onnxruntime-gpu finds one)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the network (default: all cores)")
    p.add_argument("--max-frame-mb", type=float, default=2048.0, metavar="MB",
                   help="largest request accepted, in MB (default 2048: a 100 MP photo in 32-bit float "
                        "plus hint layers)")
    p.add_argument("--max-pixels", type=int, default=100_000_001, metavar="N",
                   help="largest photo, in pixels (default 100 megapixels)")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="S",
                   help="drop a client that stalls for S seconds in the middle of a request (default 30)")
    p.add_argument("--idle-timeout", type=float, default=600.0, metavar="S",
                   help="close a connection idle for S seconds between requests (default 600)")
    p.add_argument("--max-connections", type=int, default=32, metavar="N",
                   help="connections served at once (default 32)")
    p.set_defaults(func=run_serve)

    s = sub.add_parser("status", help="show whether the engine runs and what it is doing",
                       description="Ask the running engine (`tinct serve`) for its status. Exit status 1 when "
                                   "no engine is running.")
    add_address(s)
    s.add_argument("--json", action="store_true", help="print the engine's status reply as JSON")
    s.set_defaults(func=run_status)

    t = sub.add_parser("stop", help="stop the running engine",
                       description="Ask the running engine to finish: queued requests are refused, the socket "
                                   "and token file are removed. Nothing to do when no engine runs.")
    add_address(t)
    t.set_defaults(func=run_stop)


def add_address(p):
    g = p.add_argument_group("where the engine listens (default: TINCT_SOCKET / TINCT_PORT / TINCT_TOKEN_FILE, "
                             "then engine.json, then the per-user defaults)")
    g.add_argument("--socket", metavar="PATH", help="Unix socket path")
    g.add_argument("--port", type=int, metavar="N", help="TCP port on 127.0.0.1 instead of a Unix socket")
    g.add_argument("--token-file", metavar="PATH", help="where the access token is written/read")


def run_serve(args):
    from ..pipeline import Colorizer
    from . import paths
    from .framing import Limits
    from .server import EngineServer, run

    for name in ("max_frame_mb", "max_pixels", "read_timeout", "idle_timeout", "max_connections"):
        if getattr(args, name) <= 0:
            raise TinctError("--%s must be positive" % name.replace("_", "-"))
    transport, address, token_file = paths.resolve(args.socket, args.port, args.token_file)

    def make_colorizer(device):
        return Colorizer(model_path=args.model, device=device, threads=args.threads)

    limits = Limits(max_frame=int(args.max_frame_mb * 1e6), read_timeout=args.read_timeout,
                    idle_timeout=args.idle_timeout)
    server = EngineServer(transport, address, token_file, make_colorizer(args.device), make_colorizer, limits=limits,
                          max_pixels=args.max_pixels, max_connections=args.max_connections,
                          restorer=installed_restorer(args.device, args.threads))
    return run(server)


def installed_restorer(device, threads):
    """The damage-restoration model the engine serves (TINCT_RESTORE_MODEL or the shipped file), if present."""
    from ..restore import Restorer

    restorer = Restorer(device=device, threads=threads)
    return restorer if restorer.installed else None


# ---- the plug-in's client, from the engine side ----

def plugin_client():
    """plugin/tinct_core/client.py (stdlib only), imported from TINCT_PLUGIN_DIR, the source tree,
    or the copy an installed wheel carries for tinct-install (installer/plugin_src)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for folder in (os.environ.get(PLUGIN_DIR_ENV), os.path.join(here, "plugin"),
                   os.path.join(here, "installer", "plugin_src")):
        if folder and os.path.isfile(os.path.join(folder, "tinct_core", "client.py")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            from tinct_core import client, config

            return client, config
    raise TinctError("this installation lacks Tinct's engine client (plugin/tinct_core); set %s to the folder that "
                     "holds tinct_core, or run from the source tree" % PLUGIN_DIR_ENV)


def make_client(args=None, autostart=True):
    """An EngineClient for this machine's engine; command-line address flags override engine.json."""
    client, config = plugin_client()
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        raise TinctError(str(exc))
    if args is not None and getattr(args, "socket", None):
        cfg.socket, cfg.port = args.socket, None
    if args is not None and getattr(args, "port", None):
        cfg.port = args.port
    if args is not None and getattr(args, "token_file", None):
        cfg.token_file = args.token_file
    return client, client.EngineClient(config=cfg, command=[sys.executable, "-m", "engine", "serve"],
                                       autostart=autostart)


def run_status(args):
    client, engine = make_client(args, autostart=False)
    try:
        st = engine.status()
    except client.EngineUnavailable as exc:
        print("tinct: %s" % exc, file=sys.stderr)
        return 1
    except client.EngineError as exc:
        raise TinctError(str(exc))
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    running = st.get("running")
    work = "idle" if not running else "working (%d%%, %s)" % (100 * running["fraction"], running["message"])
    print("tinct engine %s on %s: pid %s, %s, protocol %s, up %s" % (
        st["engine"], st["address"], st["pid"], st["device"], st["protocol"], _duration(st["uptime_s"])))
    print("  %s; %d queued; %d connection%s; %d served, %d failed; %s MB resident" % (
        work, st["queued"], st["connections"], "" if st["connections"] == 1 else "s", st["served"], st["failed"],
        st.get("rss_mb")))
    return 0


def run_stop(args):
    client, engine = make_client(args, autostart=False)
    try:
        hello = engine.shutdown()
    except client.EngineUnavailable:
        print("tinct: no engine is running at %s" % engine.config.describe())
        return 0
    except client.EngineError as exc:
        raise TinctError(str(exc))
    print("tinct engine stopped (pid %s, %s)" % (hello.get("pid"), engine.config.describe()))
    return 0


def _duration(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    return "%.1f h" % (seconds / 3600.0)


# ---- tinct colorize --engine ----

def instance_inputs(values):
    """--instances values -> (option, [uint8 masks]): "auto"/"none" go as the option, files as masks."""
    import numpy as np

    from ..imageio import load_image

    if not values:
        return None, []
    if len(values) == 1 and values[0] in ("auto", "none"):
        return values[0], []
    if any(v in ("auto", "none") for v in values):
        raise TinctError("--instances takes auto, none, or mask files, not a mix")
    masks = []
    for path in values:
        m = load_image(path, "instance mask")
        if m.ndim == 3:
            m = m[..., 3] if m.shape[2] == 4 else m[..., :3].max(-1)
        masks.append(np.where(m >= (32768 if m.dtype.itemsize == 2 else 128), 255, 0).astype(np.uint8))
    return "selection", masks


def colorize_via_engine(in_path, out_path, hints_path=None, reference_path=None, size=256, progress=True,
                        method="net", device="auto", bits=None, instances=None, damage_path=None):
    """Colorize one file through the running engine (started if needed); writes out_path."""
    import numpy as np

    from ..imageio import PngWriter, load_image

    photo = load_image(in_path, "image")
    hints = []
    if hints_path:
        h = load_image(hints_path, "hint image")
        if h.ndim != 3 or h.shape[2] != 4:
            raise TinctError("%s: hint image needs transparency (RGBA); paint dots on a transparent layer" % hints_path)
        if h.shape[:2] != photo.shape[:2]:
            raise TinctError("%s: hint image is %dx%d but the photo %s is %dx%d" % (
                hints_path, h.shape[1], h.shape[0], in_path, photo.shape[1], photo.shape[0]))
        hints = [h]
    reference = load_image(reference_path, "reference image") if reference_path else None
    damage = None
    if damage_path and damage_path != "auto":
        from ..commands import load_damage

        damage = load_damage(damage_path, photo, in_path).astype(np.uint8) * 255
    bits = bits or (16 if photo.dtype in (np.uint16, np.float32) else 8)
    mode, masks = instance_inputs(instances)
    client, engine = make_client()
    options = {"size": size, "method": method, "device": device, "render": bits}
    if mode:
        options["instances"] = mode
    t0 = time.time()
    try:
        if damage_path == "auto":  # the engine's detector finds the mask, then the same engine restores it
            found = engine.detect_damage(photo, options={"device": device})["mask"]
            damage = np.frombuffer(found["data"], np.uint8).reshape(found["height"], found["width"])
        if progress:
            from tqdm import tqdm

            with tqdm(total=100, desc=os.path.basename(in_path), unit="%", leave=False,
                      disable=not sys.stderr.isatty()) as bar:
                def report(fraction, message):
                    bar.set_postfix_str(message)
                    bar.n = int(fraction * 100)
                    bar.refresh()

                result = engine.colorize(photo=photo, hints=hints, reference=reference, damage=damage,
                                         instances=masks, options=options, progress=report)
        else:
            result = engine.colorize(photo=photo, hints=hints, reference=reference, damage=damage,
                                     instances=masks, options=options)
    except client.EngineError as exc:
        raise TinctError("%s: %s" % (in_path, exc))
    rgb = result["rgb"]
    arr = np.frombuffer(rgb["data"], dtype=np.dtype(rgb["dtype"])).reshape(rgb["height"], rgb["width"], 3)
    writer = PngWriter(out_path, rgb["width"], rgb["height"], 3, bits, level=3)
    try:
        for y in range(0, rgb["height"], 256):
            writer.write_rows(arr[y:y + 256])
        writer.close()
    except BaseException:
        writer.abort()
        raise
    info = result["info"]
    print("%s -> %s (%dx%d, %s on %s, by the engine at %s in %.2f s)" % (
        in_path, out_path, rgb["width"], rgb["height"], info.get("method"), info.get("device"),
        engine.config.describe(), time.time() - t0))
    inst = info.get("instances")
    for message in (inst.get("messages", []) if isinstance(inst, dict) else []) + info.get("ignored", []):
        print("  " + message)
    if "restored_pixels" in info:
        print("  %d damaged pixels restored" % info["restored_pixels"])
    return 0
