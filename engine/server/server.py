"""The engine process: a user-only socket, the token, the lock, and the accept loop.

Start-up order matters for the client's autostart: lock (one engine per user),
model loaded, token written, socket listening, and only then the readiness line
on stdout, so a client that saw the line can connect at once.
"""

import os
import signal
import socket
import stat
import sys
import threading
import time

from .. import TinctError, __version__, interrupts
from . import guard, paths
from .connection import Connection
from .framing import Limits
from .protocol import PROTOCOL_VERSION
from .worker import Worker

READY_PREFIX = "tinct engine ready"
UNIX_PATH_MAX = 104 if sys.platform == "darwin" else 107


def log(text):
    print("tinct engine: %s" % text, file=sys.stderr, flush=True)


class EngineServer:
    def __init__(self, transport, address, token_file, colorizer, make_colorizer, limits=None,
                 max_pixels=100_000_001, max_connections=32, write_timeout=120.0, lock_path=None, restorer=None):
        self.transport = transport
        self.address = address
        self.token_file = token_file
        self.colorizer = colorizer
        self.limits = limits or Limits()
        self.max_pixels = int(max_pixels)
        self.max_connections = int(max_connections)
        self.write_timeout = float(write_timeout)
        self.lock = guard.InstanceLock(lock_path or paths.lock_file(transport, address))
        self.worker = Worker(colorizer, make_colorizer, log=log, restorer=restorer)
        self.token = None
        self.listener = None
        self.connections = set()
        self._conn_lock = threading.Lock()
        self._numbers = 0
        self.started = time.time()
        self.stopping = False
        self.stop_reason = None
        self._stop = threading.Event()

    @property
    def where(self):
        return paths.describe(self.transport, self.address)

    # ---- start ----

    def start(self):
        self.lock.acquire({"pid": os.getpid(), "address": self.where})
        try:
            self.colorizer.runtime  # load the model before anyone can connect
            self._preload_instance_model()
            self._preload_restoration_model()
            self.token = guard.new_token(self.token_file)
            self.listener = self._listen()
            self.worker.start()
        except BaseException:
            self._cleanup()
            raise

    def _preload_restoration_model(self):
        """Load the restoration model up front; a broken one only costs damage masks (then reported as unused)."""
        if self.worker.restorer is None:
            return
        try:
            self.worker.restorer.runtime
        except TinctError as exc:
            log("the restoration model is not usable (%s); damage masks will be ignored" % exc)
            self.worker.restorer = None

    def _preload_instance_model(self):
        """Load the instance-aware model too when one is installed; a broken one only costs that mode."""
        if not getattr(self.colorizer, "fused_model_path", None):
            return
        try:
            self.colorizer.fused
        except TinctError as exc:
            log("the instance-aware model is not usable (%s); colorizing with the full network alone" % exc)

    def _listen(self):
        if self.transport == "tcp":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if os.name != "nt":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(self.address)
            except OSError as exc:
                s.close()
                raise TinctError("cannot listen on %s (%s); another program may use that port, choose another "
                                 "with --port" % (self.where, exc.strerror or exc))
        else:
            path = self.address
            if len(os.fsencode(path)) > UNIX_PATH_MAX:
                raise TinctError("socket path %s is %d bytes, over the system's limit of %d; set TINCT_SOCKET to a "
                                 "shorter path" % (path, len(os.fsencode(path)), UNIX_PATH_MAX))
            guard.secure_dir(os.path.dirname(os.path.abspath(path)))
            self._remove_stale_socket(path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                s.bind(path)
            except OSError as exc:
                s.close()
                raise TinctError("cannot listen on %s (%s)" % (path, exc.strerror or exc))
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        s.listen(64)
        s.settimeout(0.5)
        return s

    @staticmethod
    def _remove_stale_socket(path):
        """We hold the lock, so a socket file left here belongs to an engine that died."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise TinctError("%s exists and is not a socket; remove it or choose another --socket" % path)
        os.unlink(path)
        log("removed the stale socket %s left by an engine that stopped without cleaning up" % path)

    def ready_line(self):
        return "%s on %s (pid %d, device %s, protocol %d)" % (
            READY_PREFIX, self.where, os.getpid(), self.colorizer.device, PROTOCOL_VERSION)

    # ---- serve ----

    def serve_forever(self):
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                time.sleep(0.05)
                continue
            self._accept(sock)
        self._shutdown()

    def _accept(self, sock):
        if self.transport == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.limits.read_timeout)
        with self._conn_lock:
            self._numbers += 1
            conn = Connection(self, sock, self._numbers)
            full = len(self.connections) >= self.max_connections
            if not full:
                self.connections.add(conn)
        if full:
            conn.send_error(None, "busy", "the engine already serves %d connections; try again shortly"
                            % self.max_connections, fatal=True)
            threading.Thread(target=conn._write_loop, daemon=True).start()
            return
        conn.start()

    def connection_closed(self, conn):
        with self._conn_lock:
            self.connections.discard(conn)

    def request_stop(self, reason):
        self.stop_reason = reason
        self._stop.set()

    def _shutdown(self):
        self.stopping = True
        log("stopping: %s" % (self.stop_reason or "asked to stop"))
        try:
            self.listener.close()
        except OSError:
            pass
        self.worker.stop("the engine was stopped (%s)" % (self.stop_reason or "tinct stop"))
        with self._conn_lock:
            conns = list(self.connections)
        for conn in conns:
            conn.finish()
        deadline = time.time() + 3
        for conn in conns:
            conn.closed.wait(max(0.0, deadline - time.time()))
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._cleanup()

    def _cleanup(self):
        if self.transport == "unix" and self.listener is not None:
            try:
                if stat.S_ISSOCK(os.lstat(self.address).st_mode):
                    os.unlink(self.address)
            except OSError:
                pass
        if self.token:
            guard.remove_token(self.token_file, self.token)
        self.lock.release()

    # ---- replies ----

    def hello_reply(self, rid):
        rt = self.colorizer.runtime
        meta = rt.metadata
        model = {"name": meta.get("model_name") or os.path.splitext(os.path.basename(rt.path))[0],
                 "file": os.path.basename(rt.path), "device": rt.device}
        if "tinct_version" in meta:
            model["version"] = meta["tinct_version"]
        models = [model]
        fused = getattr(self.colorizer, "fused_model_path", None)
        if fused:
            models.append({"name": "instance-aware", "file": os.path.basename(fused)})
        return {"type": "hello", "id": rid, "protocol": PROTOCOL_VERSION, "engine": __version__,
                "device": self.colorizer.device, "models": models, "methods": ["net", "levin"],
                "max_pixels": self.max_pixels, "max_frame_bytes": self.limits.max_frame,
                "features": self.worker.features(), "pid": os.getpid()}

    def status_reply(self, rid):
        current = self.worker.current
        with self._conn_lock:
            n = len(self.connections)
        return {"type": "status", "id": rid, "pid": os.getpid(), "engine": __version__, "protocol": PROTOCOL_VERSION,
                "address": self.where, "device": self.colorizer.device,
                "uptime_s": round(time.time() - self.started, 1), "connections": n,
                "queued": self.worker.queue.count(),
                "running": None if current is None else {"fraction": round(current.fraction, 3),
                                                         "message": current.message},
                "served": self.worker.served, "failed": self.worker.failed, "rss_mb": rss_mb()}


def rss_mb():
    """This process's resident memory in MB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)
    except (ImportError, OSError):
        return None


def run(server):
    """Start, print the readiness line, serve until stopped (tinct stop, SIGTERM, Ctrl-C)."""
    server.start()

    def on_signal(signum, frame):
        server.request_stop("signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if interrupts.seen():   # a Ctrl+C while it was loading, whose KeyboardInterrupt was lost
        server.request_stop("signal %d" % signal.SIGINT)
    print(server.ready_line(), flush=True)
    if not sys.stdout.isatty():
        # The autostarting client reads this one line and then closes the pipe; nothing may write there again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    log("serving on %s; token in %s" % (server.where, server.token_file))
    server.serve_forever()
    log("stopped")
    return 0
