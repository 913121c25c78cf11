"""One client connection: a reader thread that checks and routes frames, a writer thread that sends.

Reads and writes are separate so that a client which stops reading (or a slow
one) only ever stalls its own writer; the worker just drops frames in the
outbox. Any frame the engine cannot accept is answered with an error naming
what was wrong, then the connection is closed; the engine serves on.
"""

import socket
import sys
import threading
import time
from collections import deque

from .framing import FrameError, SocketStream, encode_frame, read_frame
from .protocol import PIXEL_REQUESTS, ProtocolError, check_request, error_header, request_id
from .worker import Job

MAX_JOBS_PER_CONNECTION = 8
PRE_HELLO_FRAME = 1 << 20   # until hello proves the token, a peer may not make the engine allocate more
LINGER_S = 1.0


class Connection:
    def __init__(self, server, sock, number):
        self.server = server
        self.sock = sock
        self.number = number
        self.out = sock.dup()
        self.out.settimeout(server.write_timeout)
        self.outbox = deque()
        self.cond = threading.Condition()
        self.closing = False          # no more frames accepted into the outbox
        self.closed = threading.Event()
        self.jobs = {}                # request id -> worker.Job
        self.greeted = False
        self.jobs_lock = threading.Lock()

    def start(self):
        threading.Thread(target=self._read_loop, name="tinct-read-%d" % self.number, daemon=True).start()
        threading.Thread(target=self._write_loop, name="tinct-write-%d" % self.number, daemon=True).start()

    # ---- sending (any thread) ----

    def send(self, header, arrays=()):
        with self.cond:
            if self.closing:
                return False
            self.outbox.append((header, list(arrays)))
            self.cond.notify()
            return True

    def send_progress(self, rid, fraction, message):
        """Queue a progress event; an unsent older one for the same request is replaced, not piled up."""
        header = {"type": "progress", "id": rid, "fraction": round(float(fraction), 4), "message": message}
        with self.cond:
            if self.closing:
                return
            if self.outbox and self.outbox[-1][0].get("type") == "progress" and self.outbox[-1][0].get("id") == rid:
                self.outbox[-1] = (header, [])
            else:
                self.outbox.append((header, []))
            self.cond.notify()

    def send_error(self, rid, code, message, fatal):
        self.send(error_header(rid, code, message, fatal))
        if fatal:
            self.finish()

    def finish(self):
        """Send what is queued, then close."""
        with self.cond:
            self.closing = True
            self.cond.notify()

    def is_closed(self):
        return self.closed.is_set()

    def job_done(self, rid):
        with self.jobs_lock:
            self.jobs.pop(rid, None)

    # ---- reading ----

    def _read_loop(self):
        stream = SocketStream(self.sock, self.server.limits)
        pre_hello = _PreHelloLimits(self.server.limits)
        try:
            while not self.closing:
                stream.limits = self.server.limits if self.greeted else pre_hello
                stream.wait_for_frame()
                try:
                    frame = read_frame(stream, stream.limits)
                except FrameError as exc:
                    if exc.code != "idle":
                        self.send_error(None, exc.code, exc.message, fatal=True)
                    break
                if frame is None:
                    break
                try:
                    self._handle(frame)
                except ProtocolError as exc:
                    self.send_error(request_id(frame.header), exc.code, exc.message, exc.fatal)
                    if exc.fatal:
                        break
        except OSError:
            pass
        finally:
            self.finish()
            self.server.worker.drop_connection(self)

    def _handle(self, frame):
        kind, rid, request = check_request(frame, self.server.token, self.greeted, self.server.max_pixels)
        if kind == "hello":
            self.greeted = True
            self.send(self.server.hello_reply(rid))
        elif kind == "status":
            self.send(self.server.status_reply(rid))
        elif kind in PIXEL_REQUESTS:
            self._queue(request)
        elif kind == "cancel":
            with self.jobs_lock:
                job = self.jobs.get(frame.header.get("target"))
            if job is not None:
                self.server.worker.cancel(job)
        elif kind == "shutdown":
            self.send({"type": "bye", "id": rid})
            self.server.request_stop("a client asked the engine to stop")

    def _queue(self, request):
        with self.jobs_lock:
            if request.id in self.jobs:
                raise ProtocolError("bad_request", "request id %r is already in use on this connection" % (request.id,))
            if len(self.jobs) >= MAX_JOBS_PER_CONNECTION:
                raise ProtocolError("busy", "%d requests are already waiting on this connection; wait for one to "
                                    "finish" % MAX_JOBS_PER_CONNECTION, fatal=False)
            job = Job(self, request)
            self.jobs[request.id] = job
        self.server.worker.submit(job)

    # ---- writing ----

    def _write_loop(self):
        try:
            while True:
                with self.cond:
                    self.cond.wait_for(lambda: self.outbox or self.closing)
                    if not self.outbox:
                        break
                    header, arrays = self.outbox.popleft()
                for chunk in encode_frame(header, arrays):
                    self.out.sendall(chunk)
                del header, arrays
            self._linger()
        except (OSError, ValueError) as exc:
            if not isinstance(exc, (BrokenPipeError, ConnectionResetError, socket.timeout)):
                print("tinct engine: connection %d: %s" % (self.number, exc), file=sys.stderr)
        finally:
            with self.cond:
                self.closing = True
                self.outbox.clear()
            self.closed.set()
            for s in (self.out, self.sock):
                try:
                    s.close()
                except OSError:
                    pass
            self.server.connection_closed(self)

    def _linger(self):
        """Half-close, then read and drop what the peer still sends (briefly), so it sees our last
        frame instead of a reset when it was still sending a frame we refused."""
        try:
            self.out.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.time() + LINGER_S
        self.out.settimeout(0.1)
        sink = bytearray(1 << 16)
        while time.time() < deadline:
            try:
                if not self.out.recv_into(sink):
                    return
            except socket.timeout:
                if self.server.stopping:
                    return
            except OSError:
                return


class _PreHelloLimits:
    """The server's limits, but frames before hello stay small."""

    def __init__(self, limits):
        self.max_frame = min(limits.max_frame, PRE_HELLO_FRAME)
        self.max_header = limits.max_header
        self.read_timeout = limits.read_timeout
        self.idle_timeout = limits.idle_timeout
