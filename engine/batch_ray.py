"""`tinct batch --ray`: plain `tinct batch`, spread over a Ray cluster for archives of millions of scans.

Ray Data does the scheduling (actor pools that keep the model loaded, GPUs, backpressure, retries),
so Tinct keeps no scheduler of its own. Each actor runs the very function plain batch runs on each
photo (`commands.colorize_file`), so the pixels are the same, and writes its outputs itself: the
driver holds only file names and one small status row per photo, never pixels.

Ray is imported only here and only when `--ray` is given: plain `tinct` never needs it.
"""

import argparse
import json
import logging
import os
import posixpath
import shutil
import socket
import sys
import tempfile
import time

from . import TinctError
from .commands import IMAGE_EXTS

REPORT_NAME = "_tinct_report.jsonl"
CONNECT_TIMEOUT_S = 3.0
OBJECT_STORES = ("s3", "gcs")  # filesystems whose single upload is atomic: an object appears only complete
STATUS_FIELDS = ("input", "status", "error", "megapixels", "fused")


def add_ray_options(parser):
    """The `--ray` options of `tinct batch` (registered by engine.commands; importing ray waits for --ray)."""
    group = parser.add_argument_group(
        "on a Ray cluster (pip install 'tinct[ray]'; docs/scale.md)",
        "INPUT_DIR, OUTPUT_DIR and the hints and damage folders may then also be URLs that\n"
        "pyarrow or fsspec read (s3://bucket/scans, gs://..., file:///...). Outputs already there\n"
        "are skipped, so a killed job run again does only what is left; photos that fail are\n"
        "listed in OUTPUT_DIR/%s and the job goes on. Each output is byte-identical\n"
        "to plain tinct batch's on the same machine.\n"
        "  tinct batch scans/ colored/ --ray           a local Ray on this machine's CPUs\n"
        "  RAY_ADDRESS=head:6379 tinct batch s3://archive/scans s3://archive/colored --ray --device cuda"
        % REPORT_NAME)
    group.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="run on Ray: join the cluster at ADDRESS (host:port or ray://host:port); without "
                            "ADDRESS, or with auto, join $RAY_ADDRESS when set, else start a local Ray")
    group.add_argument("--ray-actors", metavar="N|MIN-MAX",
                       help="how many model-holding actors: N, or MIN-MAX to let Ray scale between them "
                            "(default: one per CPU of the cluster, or one per GPU with --device cuda)")


def parse_actors(text):
    """'4' -> 4, '2-8' -> (2, 8): Ray Data's `concurrency` for the actor pool."""
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        parts = []
    if len(parts) == 1 and parts[0] >= 1:
        return parts[0]
    if len(parts) == 2 and 1 <= parts[0] <= parts[1]:
        return tuple(parts)
    raise TinctError("--ray-actors %s: give a count like 4 or a range like 2-8" % text)


# ---- where the files are ------------------------------------------------------------------------------

def open_location(url):
    """(pyarrow filesystem, path in it) for a local folder or a URL pyarrow or fsspec understands."""
    import pyarrow
    import pyarrow.fs as pafs

    if "://" not in url:
        return pafs.LocalFileSystem(), os.path.abspath(url)
    if url.startswith("s3://") and "allow_delayed_open" not in url:
        try:  # one PUT, not a multipart upload, for files under the part size (most outputs): fewer requests
            return pafs.FileSystem.from_uri(url + ("&" if "?" in url else "?") + "allow_delayed_open=true")
        except pyarrow.ArrowInvalid:
            pass  # a pyarrow without the option
    try:
        return pafs.FileSystem.from_uri(url)
    except pyarrow.ArrowInvalid:
        pass  # a scheme pyarrow lacks: try fsspec's
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise TinctError("%s: no filesystem for this URL (%s)" % (url, exc))
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def is_local(fs):
    return fs.type_name == "local"


def list_names(fs, folder, what):
    """File names (not paths) directly in `folder`, sorted; hidden files skipped as plain batch does."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, recursive=False))
    except (FileNotFoundError, NotADirectoryError, OSError) as exc:
        raise TinctError("%s: %s not found or not a folder (%s)" % (folder, what, exc))
    return sorted(i.base_name for i in infos
                  if i.type == pafs.FileType.File and not i.base_name.startswith("."))


def fetch(fs, path, local_path):
    """Copy one file from `fs` to a local path."""
    with fs.open_input_stream(path) as src, open(local_path, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def put(fs, local_path, path):
    """Upload a finished local file so that `path` never exists half-written: one PUT on object
    stores, a temporary name then a rename elsewhere."""
    target = path if fs.type_name in OBJECT_STORES else path + ".part"
    with open(local_path, "rb") as src, fs.open_output_stream(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if target != path:
        fs.move(target, path)


def output_name(input_name):
    """Plain batch's output name: the input's stem + .png."""
    return posixpath.splitext(input_name)[0] + ".png"


class FolderIndex:
    """stem -> file in a hints or damage folder, chosen as plain batch's find_by_stem chooses (first
    sorted name with an image extension), listed once per actor instead of once per photo."""

    def __init__(self, url):
        self.fs, self.folder = open_location(url)
        self.by_stem = {}
        for name in list_names(self.fs, self.folder, "folder"):
            stem, ext = posixpath.splitext(name)
            if ext.lower() in IMAGE_EXTS:
                self.by_stem.setdefault(stem, name)

    def local_path(self, stem, scratch):
        """The matching file as a local path (downloaded into `scratch` when remote), or None."""
        name = self.by_stem.get(stem)
        if name is None:
            return None
        if is_local(self.fs):
            return os.path.join(self.folder, name)
        local = os.path.join(scratch, name)
        fetch(self.fs, posixpath.join(self.folder, name), local)
        return local


# ---- the actor ----------------------------------------------------------------------------------------

class PhotoWorker:
    """One per Ray actor: loads the model once, then colorizes each photo of a batch with plain batch's
    own `colorize_file` and writes its output right away, returning only a small status row."""

    def __init__(self, options):
        from .commands import load_reference, make_colorizer, make_restorer

        self.args = argparse.Namespace(**options["args"])
        self.colorizer = make_colorizer(self.args)
        if self.args.method == "net":
            self.colorizer.runtime  # load once, here, not on the first photo
            self.colorizer.fused
        self.restorer = make_restorer(self.args) if options["damage_dir"] else None
        self.reference = None
        if options["reference_bytes"] is not None:
            with tempfile.TemporaryDirectory(prefix="tinct-ray-") as tmp:
                ref_path = os.path.join(tmp, "reference" + options["reference_ext"])
                with open(ref_path, "wb") as f:
                    f.write(options["reference_bytes"])
                self.reference = load_reference(ref_path)
        self.input_scheme = options["input_scheme"]
        self.out_fs, self.out_dir = open_location(options["output"])
        self.hints = FolderIndex(options["hints_dir"]) if options["hints_dir"] else None
        self.damage = FolderIndex(options["damage_dir"]) if options["damage_dir"] else None

    def __call__(self, batch):
        import numpy as np

        rows = [self.colorize_one(str(path), data) for path, data in zip(batch["path"], batch["bytes"])]
        return {k: np.array([r[k] for r in rows]) for k in STATUS_FIELDS}

    def colorize_one(self, path, data):
        """Colorize one photo from its bytes; any failure becomes a status row naming `path`."""
        from .commands import colorize_file

        path = self.input_scheme + path  # as the user spells it: s3://bucket/scans/x.jpg
        name = posixpath.basename(path)
        stem = posixpath.splitext(name)[0]
        work = tempfile.mkdtemp(prefix="tinct-ray-")
        local_in = os.path.join(work, name)
        try:
            with open(local_in, "wb") as f:
                f.write(data)
            hints = self.hints.local_path(stem, work) if self.hints else None
            damage = self.damage.local_path(stem, work) if self.damage else None
            if is_local(self.out_fs):  # PngWriter writes NAME.png.part and renames it: complete or absent
                local_out = os.path.join(self.out_dir, stem + ".png")
            else:
                local_out = os.path.join(work, stem + ".png")
            result = colorize_file(self.colorizer, local_in, local_out, hints, self.reference, self.args,
                                   damage_path=damage, restorer=self.restorer)
            if not is_local(self.out_fs):
                put(self.out_fs, local_out, posixpath.join(self.out_dir, stem + ".png"))
            return {"input": path, "status": "done", "error": "", "megapixels": result.width * result.height / 1e6,
                    "fused": result.info.get("instances", {}).get("model") == "fused"}
        except Exception as exc:  # one bad photo must not stop a job of millions
            message = str(exc) if isinstance(exc, TinctError) else "%s: %s" % (type(exc).__name__, exc)
            return {"input": path, "status": "failed", "error": message.replace(local_in, path),
                    "megapixels": 0.0, "fused": False}
        finally:
            shutil.rmtree(work, ignore_errors=True)


# ---- the driver ---------------------------------------------------------------------------------------

def check_reachable(address):
    """Fail in seconds, in one line, when nothing listens at a Ray address (ray.init would retry for long)."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host or rest, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise TinctError("cannot reach the Ray cluster at %s (%s); start one with `ray start --head` or unset "
                         "RAY_ADDRESS to use a local Ray" % (address, exc))


def connect(address):
    """Join the cluster at `address` or $RAY_ADDRESS, else start a local Ray. Returns whether this call
    started Ray (and so should stop it); a Ray already initialized in this process is reused."""
    if address in (None, "auto"):
        address = os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("auto", "local"):
        check_reachable(address)
    import ray

    if ray.is_initialized():
        return False
    # Ray's core warns on stderr about internals (e.g. "constructor arguments in the object store"); quiet
    # unless the user asked for its logs
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    # no address: a new local Ray, even where `ray start` once ran on this machine (ray.init would join that)
    where = {"address": address} if address else {"address": "local", "include_dashboard": False}
    try:
        ray.init(logging_level="ERROR", log_to_driver=False, **where)
    except (ConnectionError, ValueError) as exc:  # e.g. a token-protected head; ray:// without ray[client]
        hint = "; a cluster from `ray start` wants its token: RAY_AUTH_MODE=token" if isinstance(
            exc, ConnectionError) else ""
        raise TinctError("cannot join the Ray cluster at %s (%s)%s" % (address, str(exc).strip().splitlines()[-1],
                                                                      hint))
    return True


def actor_resources(args, cluster):
    """(concurrency, num_gpus per actor): one actor per GPU on GPUs, one per CPU otherwise."""
    gpus = int(cluster.get("GPU", 0))
    if args.device == "cuda" and not gpus:
        raise TinctError("--device cuda asked for, but the Ray cluster has no GPUs")
    use_gpu = gpus > 0 and args.device in ("cuda", "auto")
    if args.ray_actors:
        concurrency = parse_actors(args.ray_actors)
    else:
        concurrency = max(1, gpus if use_gpu else int(cluster.get("CPU", 1)))
    return concurrency, (1 if use_gpu else 0)


def same_threads_as_plain_batch():
    """Environment for the actors: Ray caps OMP_NUM_THREADS at an actor's CPUs, but OpenBLAS's thread
    count changes the last bits of the pixels, so the actors keep the setting plain batch would have
    (the driver's value; empty means unset, i.e. the node's own default)."""
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}


def worker_options(args, output_url):
    """What every actor needs, as plain values: the options plain batch reads, with local paths made
    absolute (actors run in other folders) and the reference's bytes (it may live on the driver only)."""
    import pyarrow.fs as pafs

    keep = ("size", "method", "model", "device", "bits", "instances", "fused_model", "restore_model")
    plain = {k: getattr(args, k, None) for k in keep}
    for k in ("model", "fused_model", "restore_model"):
        if plain[k]:  # checked here so that a typo fails before Ray starts; every node needs the file
            plain[k] = os.path.abspath(plain[k])
            if not os.path.isfile(plain[k]):
                raise TinctError("model file %s not found (with --ray it must be at this path on every node)"
                                 % plain[k])
    if plain["instances"] and plain["instances"] not in (["auto"], ["none"]):
        plain["instances"] = [os.path.abspath(p) for p in plain["instances"]]
    ref_bytes = ref_ext = None
    if args.reference:
        from .commands import load_reference

        fs, path = open_location(args.reference)
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise TinctError("%s: reference image not found" % args.reference)
        with fs.open_input_stream(path) as f:
            ref_bytes = f.read()
        ref_ext = posixpath.splitext(path)[1]
        with tempfile.NamedTemporaryFile(suffix=ref_ext) as tmp:  # fail here, once, on a bad reference
            tmp.write(ref_bytes)
            tmp.flush()
            load_reference(tmp.name)
    scheme = args.input_dir.split("://", 1)[0] + "://" if "://" in args.input_dir else ""
    return {"args": plain, "input_scheme": scheme, "output": output_url, "hints_dir": args.hints_dir,
            "damage_dir": args.damage_dir, "reference_bytes": ref_bytes, "reference_ext": ref_ext}


def plan(args):
    """(input fs, paths still to do, skipped count, output fs, output folder), from one listing of each
    folder: an input counts as done when its output exists, since outputs only ever appear complete."""
    in_fs, in_dir = open_location(args.input_dir)
    names = list_names(in_fs, in_dir, "input folder")
    if not names:
        raise TinctError("%s: no files to colorize" % args.input_dir)
    for folder, what in ((args.hints_dir, "hints folder"), (args.damage_dir, "damage folder")):
        if folder:
            list_names(*open_location(folder), what)
    out_fs, out_dir = open_location(args.output_dir)
    out_fs.create_dir(out_dir, recursive=True)
    existing = set(n for n in list_names(out_fs, out_dir, "output folder") if n.endswith(".png"))
    join = os.path.join if is_local(in_fs) else posixpath.join
    todo = [join(in_dir, n) for n in names if output_name(n) not in existing]
    return in_fs, todo, len(names) - len(todo), out_fs, out_dir


class Report:
    """OUTPUT/_tinct_report.jsonl: one JSON line per failed photo of this run, written as they come
    (into a local file uploaded at the end when OUTPUT is remote)."""

    def __init__(self, out_fs, out_dir):
        self.out_fs, self.remote_path = out_fs, posixpath.join(out_dir, REPORT_NAME)
        if is_local(out_fs):
            self.path = os.path.join(out_dir, REPORT_NAME)
            self.file = open(self.path, "w")
        else:
            self.file = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
            self.path = self.file.name

    def add(self, row):
        self.file.write(json.dumps({"input": row["input"], "error": row["error"]}) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()
        if not is_local(self.out_fs):
            put(self.out_fs, self.path, self.remote_path)
            os.remove(self.path)


def run_batch_ray(args):
    import importlib.util

    missing = [m for m in ("ray", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise TinctError("--ray needs %s: pip install 'tinct[ray]'" % " and ".join(missing))
    if args.ray_actors:
        parse_actors(args.ray_actors)  # a typo fails before Ray starts
    in_fs, todo, skipped, out_fs, out_dir = plan(args)
    options = worker_options(args, args.output_dir)
    started = connect(args.ray)
    import ray

    try:
        return execute(args, in_fs, todo, skipped, out_fs, out_dir, options)
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        raise TinctError("the Ray job stopped: %s" % (cause if isinstance(cause, TinctError) else
                                                       str(exc).strip().splitlines()[-1]))
    finally:
        if started:
            ray.shutdown()


def try_worker(options):
    """Build one PhotoWorker and drop it: None, or the TinctError's message."""
    try:
        PhotoWorker(options)
    except TinctError as exc:
        return str(exc)
    return None


def check_worker_starts(options, resources):
    """Build one worker in a plain Ray task first, on a node like the actors': a model that does not
    load, or a node without CUDA, then fails in one line instead of Ray restarting the actors forever."""
    import ray

    probe = ray.remote(try_worker).options(max_retries=0, **resources)
    problem = ray.get(probe.remote(options))
    if problem:
        raise TinctError(problem)


def execute(args, in_fs, todo, skipped, out_fs, out_dir, options):
    """Stream the photos through the actor pool, tallying status rows as they come back."""
    import ray
    from tqdm import tqdm

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is below, in photos
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes are for Ray developers
    concurrency, gpus = actor_resources(args, ray.cluster_resources())
    resources = {"num_cpus": 0 if gpus else 1, "num_gpus": gpus,
                 "runtime_env": {"env_vars": same_threads_as_plain_batch()}}
    if todo:
        check_worker_starts(options, resources)
    report = Report(out_fs, out_dir)
    done = failed = fused = 0
    megapixels = 0.0
    start = time.perf_counter()
    try:
        if todo:
            ds = ray.data.read_binary_files(todo, filesystem=in_fs, include_paths=True,
                                            num_cpus=0)  # reading waits on I/O, not on a CPU
            pool = (ray.data.ActorPoolStrategy(size=concurrency) if isinstance(concurrency, int) else
                    ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1]))
            ds = ds.map_batches(PhotoWorker, fn_constructor_args=(options,), batch_size=1, batch_format="numpy",
                                compute=pool, **resources)
            with tqdm(total=len(todo), desc="colorizing", unit="photo") as bar:
                for row in ds.iter_rows():
                    if row["status"] == "done":
                        done += 1
                        megapixels += float(row["megapixels"])
                        fused += bool(row["fused"])
                    else:
                        failed += 1
                        report.add(row)
                    bar.update(1)
    finally:
        report.close()
    seconds = time.perf_counter() - start
    print("%d done, %d skipped (already there), %d failed, into %s" % (done, skipped, failed, args.output_dir))
    if done:
        print("%.1f s: %.2f photos/s, %.1f MP/s on %s Ray actor(s)" % (
            seconds, done / seconds, megapixels / seconds, concurrency))
    if fused:
        print("%d of them with instances (objects colorized on their own too)" % fused)
    if failed:
        print("%d failed: reasons in %s" % (failed, posixpath.join(args.output_dir, REPORT_NAME)), file=sys.stderr)
        return 2
    return 0
