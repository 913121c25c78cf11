"""Host side of the real-GIMP-3 tests: the cached trixie chroot, the plug-in install, batch runs.

The chroot is built once by tests/gimp/build_chroot.sh (cached at $TINCT_GIMP_CHROOT,
default /var/cache/tinct/gimp-chroot). Each session gets a work folder inside the
chroot (/tmp/tinct-gimp-XXXX there, visible here as <chroot>/tmp/...), a fresh
GIMP profile in it, and the plug-in installed into that profile.
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


def chroot_dir():
    return os.environ.get("TINCT_GIMP_CHROOT") or DEFAULT_CHROOT


def unavailable_reason():
    """Why the GIMP tier cannot run here (None when it can). Builds the chroot if needed (a no-op
    when it is built). Skips only without root or without debootstrap; any other build failure
    is an error, because CI (root, network to Debian) must run this tier."""
    if os.geteuid() != 0:
        return "the real-GIMP-3 tier needs root (debootstrap, chroot); run the tests as root"
    proc = subprocess.run(["bash", BUILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=900)
    if proc.returncode == 3:
        return "debootstrap is not available to build the GIMP 3 chroot: " + proc.stdout.strip()[-300:]
    if proc.returncode != 0:
        raise RuntimeError("building the GIMP chroot failed:\n" + "\n".join(proc.stdout.strip().splitlines()[-8:]))
    return None


def install_plugin(profile_dir):
    """Put the GIMP 3 plug-in into a GIMP 3 profile: <profile>/plug-ins/tinct/{tinct.py,tinct_core/}.

    The one place the tests install Tinct; switch to `tinct-install --gimp-dir` when the
    installer lands (it must produce the same layout)."""
    installer = os.path.join(ROOT, "installer", "cli.py")
    if os.path.isfile(installer) and os.environ.get("TINCT_TEST_HAND_INSTALL") != "1":
        # the installer also writes the engine config: keep it inside the test's fake home
        home = os.path.dirname(os.path.dirname(os.path.dirname(profile_dir)))  # <home>/.config/GIMP/3.0
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"))
        proc = subprocess.run([sys.executable, "-m", "installer", "--gimp-dir", profile_dir], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
        if proc.returncode == 0 and os.path.isfile(os.path.join(profile_dir, "plug-ins", "tinct", "tinct.py")):
            return os.path.join(profile_dir, "plug-ins", "tinct")
    dest = os.path.join(profile_dir, "plug-ins", "tinct")
    os.makedirs(dest, exist_ok=True)
    shutil.copy2(os.path.join(ROOT, "plugin", "tinct", "tinct.py"), os.path.join(dest, "tinct.py"))
    os.chmod(os.path.join(dest, "tinct.py"), 0o755)
    core = os.path.join(dest, "tinct_core")
    if os.path.isdir(core):
        shutil.rmtree(core)
    shutil.copytree(os.path.join(ROOT, "plugin", "tinct_core"), core,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as fh:
        return any(line.split()[1] == path for line in fh)


class GimpSession(object):
    """A work folder in the chroot, /proc and /dev mounted for the session's lifetime."""

    def __init__(self):
        self.root = chroot_dir()
        self.work = None
        self._mounts = []

    def __enter__(self):
        for src, sub, args in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
            target = os.path.join(self.root, sub)
            if not _mounted(target):
                subprocess.check_call(["mount"] + args + [src, target])
                self._mounts.append(target)
        self.work = tempfile.mkdtemp(prefix="tinct-gimp-", dir=os.path.join(self.root, "tmp"))
        os.chmod(self.work, 0o755)
        self.home = self.host_path("home")
        self.profile = os.path.join(self.home, ".config", "GIMP", "3.0")
        os.makedirs(self.profile)
        shutil.copy2(os.path.join(HERE, "inside.py"), self.host_path("inside.py"))
        return self

    def __exit__(self, *exc):
        if self.work and os.environ.get("TINCT_KEEP_GIMP_WORK") != "1":
            shutil.rmtree(self.work, ignore_errors=True)
        for target in reversed(self._mounts):
            subprocess.call(["umount", "-l", target])
        self._mounts = []

    def host_path(self, *parts):
        return os.path.join(self.work, *parts)

    def chroot_path(self, *parts):
        return "/" + os.path.relpath(os.path.join(self.work, *parts), self.root)

    def batch(self, body, env=None, timeout=240, gui=False):
        """Run a python-fu-eval batch script (inside.py's helpers preloaded; set REPORT[...] and it is
        written as JSON). Returns (report dict, stdout+stderr text, seconds)."""
        report = self.chroot_path("report-%d.json" % int(time.time() * 1000))
        script = ("exec(open(%r).read())\n" % self.chroot_path("inside.py")
                  + "WORK = %r\n" % self.chroot_path() + "def _main():\n"
                  + "".join("    " + line + "\n" for line in body.strip("\n").splitlines())
                  + "guarded(_main, %r)\n" % report)
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.chroot_path("home"),
                    "LANG": "C.UTF-8", "TMPDIR": self.chroot_path()}
        full_env.update(getattr(self, "default_env", None) or {})
        full_env.update(env or {})
        cmd = ["chroot", self.root, "/usr/bin/env", "-i"] + ["%s=%s" % kv for kv in sorted(full_env.items())] + \
              ["timeout", "-k", "5", str(timeout)] + ([GIMP_GUI, "--no-splash"] if gui else [GIMP, "-i"]) + [ "--batch-interpreter=python-fu-eval", "-b", "-",
               "--quit"]
        t0 = time.time()
        proc = subprocess.run(cmd, input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout + 30)
        took = time.time() - t0
        host_report = os.path.join(self.root, report.lstrip("/"))
        data = {}
        if os.path.isfile(host_report):
            with open(host_report) as fh:
                data = json.load(fh)
        data["_rc"] = proc.returncode
        data["_done"] = "TINCT-BATCH-DONE" in proc.stdout
        return data, proc.stdout, took
