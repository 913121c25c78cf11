"""User-only files: the folders (0700), the token file (0600) and the one-engine-per-user lock.

Anyone who can reach the socket can make the engine read and write images, so
only the user may reach it: the socket's folder is 0700, the socket 0600, and
every request must also carry a random token that only the user can read.
"""

import json
import os
import secrets
import stat

from .. import TinctError

TOKEN_BYTES = 32


def secure_dir(path):
    """Create `path` (and parents) so that only the user can enter it; refuse one someone else owns.

    Tinct's own folders (named tinct...) are tightened to 0700 if they are not; a folder the
    user chose (say /tmp for TINCT_TOKEN_FILE) is left alone: the 0600 files protect themselves
    there, and chmod-ing a shared folder would break other programs."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.name == "nt":
        return path
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise TinctError("%s belongs to another user (uid %d); refusing to put the engine's files there"
                         % (path, st.st_uid))
    if stat.S_IMODE(st.st_mode) & 0o077 and os.path.basename(os.path.normpath(path)).startswith("tinct"):
        os.chmod(path, 0o700)
    return path


def write_private(path, text):
    """Write a 0600 file atomically (a temp file renamed over the old one)."""
    secure_dir(os.path.dirname(os.path.abspath(path)))
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    # O_EXCL | O_NOFOLLOW: never write through a file or link someone else put there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def new_token(path):
    """A fresh random token for this engine run, written to the user-only token file."""
    token = secrets.token_hex(TOKEN_BYTES)
    write_private(path, token + "\n")
    return token


def remove_token(path, token):
    """Remove the token file if it still holds our token (a newer engine may have replaced it)."""
    try:
        with open(path) as fh:
            if fh.read().strip() == token:
                os.unlink(path)
    except OSError:
        pass


class InstanceLock:
    """An exclusive lock on <runtime dir>/engine.lock, held for the engine's lifetime.

    The kernel drops it when the process dies (even by SIGKILL), so a crashed
    engine never blocks the next one. The file is never deleted: deleting a lock
    file races with a process that has just opened it."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self, info):
        secure_dir(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._lock(fd)
        except OSError:
            holder = self.holder(fd)
            os.close(fd)
            where = " at %s" % holder["address"] if holder.get("address") else ""
            pid = " (pid %s)" % holder["pid"] if holder.get("pid") else ""
            raise TinctError("an engine is already running%s%s; `tinct stop` ends it" % (pid, where))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode("utf-8"))
        self.fd = fd

    @staticmethod
    def _lock(fd):
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    @staticmethod
    def holder(fd):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing drops the lock
            self.fd = None
