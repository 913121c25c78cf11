"""Host side of the real-GIMP-3 tests: the cached trixie chroot, the plug-in install, batch runs.

The chroot is built once by tests/gimp/build_chroot.sh (cached at $TINCT_GIMP_CHROOT,
default /var/cache/tinct/gimp-chroot). Each session gets a work folder on the host
(/tmp/tinct-gimp-XXXX) that is bind-mounted into the chroot at the same path, and the
repository and the host Python are bind-mounted read-only at their own paths too. So
every path means the same file on both sides: the installer, run on the host, writes an
engine.json whose Python, command, socket and token paths work inside the chroot as well,
the engine's Unix socket in the work folder is reachable from GIMP, and the plug-in's
client can autostart the real engine from inside the chroot with the recorded command.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(HERE, "build_chroot.sh")
DEFAULT_CHROOT = "/var/cache/tinct/gimp-chroot"
GIMP = "/usr/bin/gimp-console-3.0"
GIMP_GUI = "/usr/bin/gimp-3.0"
WORK_PREFIX = "tinct-gimp-"


def chroot_dir():
    return os.environ.get("TINCT_GIMP_CHROOT") or DEFAULT_CHROOT


def unavailable_reason():
    """Why the GIMP tier cannot run here (None when it can). Builds the chroot if needed (a no-op
    when it is built). Skips only without root or without debootstrap; any other build failure
    is an error, because CI (root, network to Debian) must run this tier."""
    if os.geteuid() != 0:
        return "the real-GIMP-3 tier needs root (debootstrap, chroot, mount); run the tests as root"
    proc = subprocess.run(["bash", BUILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=1200)
    if proc.returncode == 3:
        return "debootstrap is not available to build the GIMP 3 chroot: " + proc.stdout.strip()[-300:]
    if proc.returncode != 0:
        raise RuntimeError("building the GIMP chroot failed:\n" + "\n".join(proc.stdout.strip().splitlines()[-8:]))
    return None


def installer_supports_gimp_dir():
    """True once the installer (issue 5) can install into an explicit profile."""
    cli = os.path.join(ROOT, "installer", "cli.py")
    if not os.path.isfile(cli):
        return False
    with open(cli) as fh:
        return "--gimp-dir" in fh.read()


def install_plugin(session):
    """Install the GIMP 3 plug-in into the session's GIMP profile and return its folder.

    With the installer (issue 5): `python -m installer --gimp-dir <profile>` run on the host as
    the session's user (HOME and XDG_* in the work folder), which also writes engine.json;
    the paths it records are valid inside the chroot (see the module doc). Before the installer
    can do that, the same layout is copied by hand: <profile>/plug-ins/tinct/{tinct.py, tinct_core/}."""
    dest = os.path.join(session.profile, "plug-ins", "tinct")
    if installer_supports_gimp_dir() and os.environ.get("TINCT_TEST_HAND_INSTALL") != "1":
        proc = subprocess.run([sys.executable, "-m", "installer", "--gimp-dir", session.profile, "--no-start"],
                              cwd=ROOT, env=session.host_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=300)
        session.install_log = proc.stdout
        if proc.returncode != 0:
            raise RuntimeError("tinct-install --gimp-dir %s failed (%d):\n%s"
                               % (session.profile, proc.returncode, proc.stdout[-3000:]))
        if not os.access(os.path.join(dest, "tinct.py"), os.X_OK):
            raise RuntimeError("tinct-install did not place an executable %s/tinct.py:\n%s" % (dest, proc.stdout))
        session.installed_by = "installer"
        return dest
    os.makedirs(dest, exist_ok=True)
    shutil.copy2(os.path.join(ROOT, "plugin", "tinct", "tinct.py"), os.path.join(dest, "tinct.py"))
    os.chmod(os.path.join(dest, "tinct.py"), 0o755)
    core = os.path.join(dest, "tinct_core")
    if os.path.isdir(core):
        shutil.rmtree(core)
    shutil.copytree(os.path.join(ROOT, "plugin", "tinct_core"), core,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    session.installed_by = "hand"
    return dest


def _mounts():
    with open("/proc/self/mounts") as fh:
        return [line.split()[1].replace("\\040", " ") for line in fh]


def _mounted(path):
    return os.path.realpath(path) in _mounts()


def shared_paths():
    """Host folders the chroot must see at their own paths: the repository and the host Python."""
    paths = []
    for p in (ROOT, sys.prefix, sys.base_prefix, sys.exec_prefix):
        p = os.path.realpath(p)
        if p == "/" or not os.path.isdir(p):
            continue
        paths.append(p)
    paths = sorted(set(paths))
    # drop a path inside another one (it is visible through the outer mount)
    return [p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths)]


def cleanup_stale(root):
    """Unmount work folders left mounted in the chroot by a run that was killed."""
    for m in sorted(_mounts(), reverse=True):
        rel = os.path.relpath(m, os.path.realpath(root))
        if rel.startswith("tmp" + os.sep + WORK_PREFIX) and not os.path.isdir("/" + rel):
            subprocess.call(["umount", "-l", m])


class GimpSession(object):
    """A work folder shared with the chroot, /proc, /dev and the shared paths mounted for the
    session's lifetime, and a fresh GIMP profile in <work>/home/.config/GIMP/3.0."""

    def __init__(self):
        self.root = os.path.realpath(chroot_dir())
        self.work = None
        self._mounts = []
        self.default_env = {}
        self.installed_by = None
        self.install_log = ""

    def _mount(self, args, target):
        subprocess.check_call(["mount"] + args + [target])
        self._mounts.append(target)

    def _bind(self, path, read_only):
        """Mount host `path` at the same path in the chroot. Never over something the chroot has
        itself (a system Python in /usr must not hide the chroot's /usr): returns False then."""
        target = self.root + path
        if os.path.isdir(target) and os.listdir(target) and not _mounted(target):
            return False
        os.makedirs(target, exist_ok=True)
        self._mount(["--bind", path], target)
        if read_only:
            subprocess.check_call(["mount", "-o", "remount,bind,ro", target])
        return True

    def __enter__(self):
        try:
            cleanup_stale(self.root)
            for src, sub, args in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
                target = os.path.join(self.root, sub)
                if not _mounted(target):
                    self._mount(args + [src], target)
            self.work = tempfile.mkdtemp(prefix=WORK_PREFIX, dir="/tmp")
            os.chmod(self.work, 0o755)
            self._bind(self.work, False)
            self.unshared = []   # host paths the chroot could not get (see _bind)
            for path in shared_paths():
                if not _mounted(self.root + path) and not self._bind(path, True):
                    self.unshared.append(path)
            self.home = self.path("home")
            self.profile = os.path.join(self.home, ".config", "GIMP", "3.0")
            os.makedirs(self.profile)
            os.makedirs(self.path("run"), mode=0o700)
            shutil.copy2(os.path.join(HERE, "inside.py"), self.path("inside.py"))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for target in reversed(self._mounts):
            subprocess.call(["umount", "-l", target])
        self._mounts = []
        if self.work:
            try:
                os.rmdir(self.root + self.work)  # the (now empty) mount point inside the chroot
            except OSError:
                pass
            if os.environ.get("TINCT_KEEP_GIMP_WORK") != "1":
                shutil.rmtree(self.work, ignore_errors=True)

    def path(self, *parts):
        """A path in the work folder: the same on the host and inside the chroot."""
        return os.path.join(self.work, *parts)

    def host_env(self, **extra):
        """Environment for host processes acting as the session's user (installer, engine)."""
        env = dict(os.environ, HOME=self.home, XDG_CONFIG_HOME=os.path.join(self.home, ".config"),
                   XDG_RUNTIME_DIR=self.path("run"))
        env.pop("TINCT_ENGINE_CONFIG", None)
        env.pop("TINCT_SOCKET", None)
        env.pop("TINCT_PORT", None)
        env.pop("TINCT_TOKEN_FILE", None)
        env.update(extra)
        return env

    def chroot_env(self, env=None):
        full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.home, "LANG": "C.UTF-8",
                "TMPDIR": self.work, "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
                "XDG_RUNTIME_DIR": self.path("run")}
        full.update(self.default_env or {})
        full.update(env or {})
        return full

    def chroot_cmd(self, argv, env=None):
        """argv run inside the chroot with a clean environment (the session's user)."""
        return (["chroot", self.root, "/usr/bin/env", "-i"]
                + ["%s=%s" % kv for kv in sorted(self.chroot_env(env).items())] + list(argv))

    def batch(self, body, env=None, timeout=240, gui=False):
        """Run a python-fu-eval batch script in GIMP 3 (inside.py's helpers preloaded; set REPORT[...]
        and it is written as JSON). Returns (report dict, stdout+stderr text, seconds)."""
        report = self.path("report-%d.json" % int(time.time() * 1000))
        script = ("exec(open(%r).read())\n" % self.path("inside.py")
                  + "WORK = %r\n" % self.work + "def _main():\n"
                  + "".join("    " + line + "\n" for line in body.strip("\n").splitlines())
                  + "guarded(_main, %r)\n" % report)
        gimp = [GIMP_GUI, "--no-splash"] if gui else [GIMP, "-i"]
        cmd = self.chroot_cmd(["timeout", "-k", "5", str(timeout)] + gimp
                              + ["--batch-interpreter=python-fu-eval", "-b", "-", "--quit"], env)
        t0 = time.time()
        proc = subprocess.run(cmd, input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout + 30)
        took = time.time() - t0
        data = {}
        if os.path.isfile(report):
            with open(report) as fh:
                data = json.load(fh)
        data["_rc"] = proc.returncode
        data["_done"] = "TINCT-BATCH-DONE" in proc.stdout
        return data, proc.stdout, took
