"""tinct-install against fake home folders: the files it places (modes, shebangs, layout), the
engine settings it writes (read back through the plug-in's own config loader), re-install,
upgrade, uninstall without a trace, and every bad input without a half-finished install.

The command runs as a real subprocess (`python -m installer`) with HOME pointing at the fake
home; `--no-start` keeps the engine out of it (test_installer_engine.py starts it for real).
"""

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from installer import actions, payload, placement
from installer.profiles import Profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "plugin")
VERSION = actions.TINCT_VERSION

MACHINES = []


@pytest.fixture(autouse=True)
def _remove_runtime_folders():
    yield
    while MACHINES:
        shutil.rmtree(MACHINES.pop().runtime, ignore_errors=True)


LAYOUTS = {
    "native3": ".config/GIMP/3.0",
    "native2": ".config/GIMP/2.10",
    "flatpak3": ".var/app/org.gimp.GIMP/config/GIMP/3.0",
    "snap3": "snap/gimp/current/.config/GIMP/3.0",
}


class Machine(object):
    """A fake home (and runtime folder) with GIMP profiles in it."""

    def __init__(self, tmp_path, layouts=("native3",)):
        self.home = str(tmp_path / "home")
        # a short runtime folder (sockets have a ~100-byte path limit; pytest's tmp paths are long)
        self.runtime = tempfile.mkdtemp(prefix="trt-")
        MACHINES.append(self)
        os.makedirs(self.home)
        self.profiles = {}
        for name in layouts:
            self.profiles[name] = self.add(LAYOUTS[name])

    def add(self, rel):
        path = os.path.join(self.home, rel)
        os.makedirs(path)
        return path

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TINCT_", "GIMP2_", "GIMP3_", "XDG_", "DISPLAY", "WAYLAND"))}
        env.update(HOME=self.home, XDG_RUNTIME_DIR=self.runtime)
        env.update(extra)
        return env

    def run(self, *args, **extra_env):
        proc = subprocess.run([sys.executable, "-m", "installer"] + list(args), cwd=ROOT, env=self.env(**extra_env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr

    def install(self, *args):
        code, out, err = self.run("--no-start", *args)
        assert code == 0, out + err
        return out

    def path(self, *rel):
        return os.path.join(self.home, *rel)

    def plugin_dir(self, name):
        folder = "tinct_gimp2" if name.endswith("2") else "tinct"
        return os.path.join(self.profiles[name], "plug-ins", folder)


def snapshot(*roots):
    """Every path under the roots with its mode and content hash (folders too)."""
    seen = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                digest = None
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as fh:
                        digest = hashlib.sha256(fh.read()).hexdigest()
                seen[path] = (stat.S_IMODE(st.st_mode), digest)
    return seen


def load_client_config(plugin_folder, config_path):
    """Read engine.json with the tinct_core/config.py that was installed (in a clean interpreter)."""
    code = ("import json, sys; sys.path.insert(0, %r); from tinct_core import config; c = config.load(%r);"
            "print(json.dumps({'file': config.__file__, 'python': c.python, 'socket': c.socket, 'port': c.port,"
            "'token_file': c.token_file, 'start': c.start_command(), 'describe': c.describe()}))"
            % (plugin_folder, config_path))
    out = subprocess.check_output([sys.executable, "-c", code], cwd="/", env={"PATH": os.environ.get("PATH", "")})
    return json.loads(out)


@contextlib.contextmanager
def read_only(path):
    """Make a folder truly read-only, also for root (chattr +i), and undo it afterwards."""
    if os.geteuid() == 0:
        subprocess.check_call(["chattr", "+i", path])
        try:
            yield
        finally:
            subprocess.check_call(["chattr", "-i", path])
    else:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        os.chmod(path, 0o555)
        try:
            yield
        finally:
            os.chmod(path, mode)


def source(rel):
    with open(os.path.join(PLUGIN, rel), "rb") as fh:
        return fh.read()


# --- a fresh install ---------------------------------------------------------------------

def test_each_gimp_gets_its_variant_with_modes_and_shebang(tmp_path):
    m = Machine(tmp_path, ["native3", "native2", "flatpak3", "snap3"])
    out = m.install()
    for name in ("native3", "flatpak3", "snap3"):
        folder = m.plugin_dir(name)
        script = os.path.join(folder, "tinct.py")
        assert stat.S_IMODE(os.stat(script).st_mode) == 0o755
        with open(script, "rb") as fh:
            data = fh.read()
        assert data.startswith(b"#!/usr/bin/env python3\n")
        assert data.split(b"\n", 1)[1] == source("tinct/tinct.py").split(b"\n", 1)[1]
        assert "installed Tinct %s in %s" % (VERSION, folder) in out
    script2 = os.path.join(m.plugin_dir("native2"), "tinct_gimp2.py")
    assert stat.S_IMODE(os.stat(script2).st_mode) == 0o755
    with open(script2, "rb") as fh:
        assert fh.readline() == b"#!/usr/bin/env python2\n"
    for name in m.profiles:
        folder = m.plugin_dir(name)
        core = os.path.join(folder, "tinct_core")
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(core).st_mode) == 0o755
        expected = sorted(n for n in os.listdir(os.path.join(PLUGIN, "tinct_core")) if n.endswith(".py"))
        assert sorted(os.listdir(core)) == expected
        for n in expected:
            assert stat.S_IMODE(os.stat(os.path.join(core, n)).st_mode) == 0o644
            with open(os.path.join(core, n), "rb") as fh:
                assert fh.read() == source("tinct_core/" + n)
        manifest = placement.read_manifest(folder)
        assert manifest["tinct_version"] == VERSION
        on_disk = sorted(os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
                         for d, _, fs in os.walk(folder) for f in fs)
        assert sorted(manifest["files"]) == on_disk
    assert "Filters > Colors > Tinct" in out


def test_installed_core_is_importable_from_the_plugin_folder(tmp_path):
    m = Machine(tmp_path, ["native3", "native2"])
    m.install()
    for name in ("native3", "native2"):
        info = load_client_config(m.plugin_dir(name), m.path(".config/tinct/engine.json"))
        assert info["file"].startswith(m.plugin_dir(name) + os.sep)


def test_engine_settings_are_what_the_plugin_reads_in_each_sandbox(tmp_path):
    m = Machine(tmp_path, ["native3", "flatpak3"])
    out = m.install()
    host = m.path(".config/tinct/engine.json")
    flat = m.path(".var/app/org.gimp.GIMP/config/tinct/engine.json")
    sock = os.path.join(m.runtime, "app", "org.gimp.GIMP", "tinct", "engine.sock")
    token = m.path(".var/app/org.gimp.GIMP/config/tinct/token")
    native = load_client_config(m.plugin_dir("native3"), host)
    assert native["python"] == sys.executable
    assert (native["socket"], native["port"], native["token_file"]) == (sock, None, token)
    assert native["start"] == [sys.executable, "-m", "engine", "serve", "--socket", sock, "--token-file", token]
    sandboxed = load_client_config(m.plugin_dir("flatpak3"), flat)
    assert sandboxed["start"][:3] == ["flatpak-spawn", "--host", sys.executable]
    assert sandboxed["describe"] == "unix:" + sock
    assert "flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP" in out


def test_a_native_only_machine_uses_the_documented_default_locations(tmp_path):
    m = Machine(tmp_path, ["native3"])
    m.install()
    with open(m.path(".config/tinct/engine.json")) as fh:
        data = json.load(fh)
    assert set(data) == {"python", "command", "socket", "port", "host", "token_file"}
    assert data["socket"] == os.path.join(m.runtime, "tinct", "engine.sock")
    assert data["token_file"] == m.path(".config/tinct/token")
    assert data["command"] == [sys.executable, "-m", "engine", "serve"]
    assert not os.path.exists(m.path(".var")) and not os.path.exists(m.path("snap"))


def test_macos_and_windows_layouts_install_through_the_same_steps(tmp_path):
    for platform, rel, config in (("darwin", "Library/Application Support/GIMP/3.0",
                                   "Library/Application Support/tinct/engine.json"),
                                  ("win32", "AppData/Roaming/GIMP/2.10", "AppData/Roaming/tinct/engine.json")):
        home = tmp_path / platform
        os.makedirs(str(home / rel))
        options = actions.Options(env={"HOME": str(home)}, home=str(home), platform=platform, start_engine=False)
        report = actions.install(options)
        assert report.exit_code == 0, report.to_dict()
        folder = os.path.join(str(home), rel, "plug-ins", "tinct" if rel.endswith("3.0") else "tinct_gimp2")
        assert [r.status for r in report.results] == ["installed"]
        assert os.path.isfile(os.path.join(folder, "tinct_core", "config.py"))
        with open(os.path.join(str(home), config)) as fh:
            data = json.load(fh)
        assert (data["port"] is not None) == (platform == "win32")
        report = actions.uninstall(actions.Options(env={"HOME": str(home)}, home=str(home), platform=platform))
        assert report.exit_code == 0
        assert snapshot(str(home)).keys() == {os.path.join(str(home), p) for p in _prefixes(rel)}


def _prefixes(rel):
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


# --- re-install and upgrade ----------------------------------------------------------------

def test_reinstall_is_idempotent(tmp_path):
    m = Machine(tmp_path, ["native3", "native2", "flatpak3"])
    m.install()
    first = snapshot(m.home, m.runtime)
    out = m.install()
    assert "reinstalled Tinct %s" % VERSION in out
    second = snapshot(m.home, m.runtime)
    assert second.keys() == first.keys()  # no staging or backup folders left behind
    changed = {p for p in first if first[p] != second[p]}
    assert all(p.endswith(placement.MANIFEST) for p in changed)  # only the install time differs


def test_an_older_recorded_version_is_upgraded_and_its_stale_files_go(tmp_path):
    m = Machine(tmp_path, ["native3"])
    folder = m.plugin_dir("native3")
    os.makedirs(os.path.join(folder, "tinct_core"))
    for rel in ("tinct.py", "tinct_core/__init__.py", "tinct_core/gone_in_new_version.py"):
        with open(os.path.join(folder, rel), "w") as fh:
            fh.write("# tinct_core old\n")
    with open(os.path.join(folder, placement.MANIFEST), "w") as fh:
        json.dump({"tinct_version": "0.0.1", "files": ["tinct.py", "tinct_core/__init__.py",
                                                        "tinct_core/gone_in_new_version.py", placement.MANIFEST],
                   "dirs": ["tinct_core"]}, fh)
    out = m.install()
    assert "upgraded Tinct 0.0.1 to %s" % VERSION in out
    assert not os.path.exists(os.path.join(folder, "tinct_core", "gone_in_new_version.py"))
    assert placement.read_manifest(folder)["tinct_version"] == VERSION
    assert [n for n in os.listdir(os.path.dirname(folder))] == ["tinct"]


def test_a_hand_made_install_with_loose_files_is_upgraded(tmp_path):
    m = Machine(tmp_path, ["native2"])
    plugins = os.path.join(m.profiles["native2"], "plug-ins")
    os.makedirs(os.path.join(plugins, "tinct_core"))
    with open(os.path.join(plugins, "tinct_gimp2.py"), "w") as fh:  # GIMP 2.10 would load it twice
        fh.write("from tinct_core import roles\n")
    with open(os.path.join(plugins, "tinct_core", "__init__.py"), "w") as fh:
        fh.write("")
    with open(os.path.join(plugins, "someone_elses_plugin.py"), "w") as fh:
        fh.write("print('hello')\n")
    out = m.install()
    assert "upgraded Tinct an unrecorded older version to %s" % VERSION in out
    assert sorted(os.listdir(plugins)) == ["someone_elses_plugin.py", "tinct_gimp2"]


def test_a_foreign_folder_in_the_way_is_reported_not_overwritten(tmp_path):
    m = Machine(tmp_path, ["native3"])
    os.makedirs(m.plugin_dir("native3"))
    with open(os.path.join(m.plugin_dir("native3"), "tinct.py"), "w") as fh:
        fh.write("# an unrelated plug-in that happens to be called tinct\n")
    before = snapshot(m.home)
    code, out, err = m.run("--no-start")
    assert code == 1
    assert "exists but is not Tinct" in out
    assert snapshot(m.home) == before


def test_a_failure_midway_puts_the_previous_install_back(tmp_path, monkeypatch):
    m = Machine(tmp_path, ["native3"])
    profile = Profile(m.profiles["native3"], "3.0")
    files = payload.files_for(profile.variant)
    placement.install(profile, "0.0.9", files)
    before = snapshot(m.home)
    real_write = placement._write_files

    def write_then_fail(root, files):
        real_write(root, files[:2])
        raise OSError(28, "No space left on device", os.path.join(root, files[2].relpath))

    monkeypatch.setattr(placement, "_write_files", write_then_fail)
    with pytest.raises(placement.PlacementError, match="disk is full"):
        placement.install(profile, VERSION, files)
    assert snapshot(m.home) == before
    assert placement.read_manifest(m.plugin_dir("native3"))["tinct_version"] == "0.0.9"


# --- uninstall ----------------------------------------------------------------------------

def test_uninstall_leaves_no_trace(tmp_path):
    m = Machine(tmp_path, ["native3", "native2", "flatpak3", "snap3"])
    m.add(".config/GIMP/2.99")
    before = snapshot(m.home, m.runtime)
    m.install()
    # what the plug-in and the engine write while in use
    with open(m.path(".config/tinct/last-colorize.json"), "w") as fh:
        fh.write("{}")
    with open(m.path(".config/tinct/engine.json")) as fh:
        token_file = json.load(fh)["token_file"]
    for token in (token_file, m.path(".var/app/org.gimp.GIMP/config/tinct/token")):
        with open(token, "w") as fh:
            fh.write("secret\n")
    os.makedirs(os.path.join(m.plugin_dir("native3"), "tinct_core", "__pycache__"))
    with open(os.path.join(m.plugin_dir("native3"), "tinct_core", "__pycache__", "roles.cpython-312.pyc"), "wb") as fh:
        fh.write(b"\0")
    code, out, err = m.run("--uninstall")
    assert code == 0, out + err
    assert out.count("removed Tinct %s" % VERSION) == 4
    assert "Engine settings removed" in out
    assert snapshot(m.home, m.runtime) == before


def test_uninstall_keeps_what_the_user_added(tmp_path):
    m = Machine(tmp_path, ["native3"])
    m.install()
    mine = os.path.join(m.plugin_dir("native3"), "my-notes.txt")
    with open(mine, "w") as fh:
        fh.write("mine")
    code, out, _ = m.run("--uninstall")
    assert code == 0
    assert "kept 1 file(s) Tinct did not put there: %s" % mine in out
    assert os.listdir(m.plugin_dir("native3")) == ["my-notes.txt"]


def test_uninstalling_one_profile_keeps_the_others_and_the_settings(tmp_path):
    m = Machine(tmp_path, ["native3", "flatpak3"])
    m.install()
    code, out, _ = m.run("--uninstall", "--gimp-dir", m.profiles["flatpak3"])
    assert code == 0, out
    assert not os.path.exists(m.plugin_dir("flatpak3"))
    assert not os.path.exists(m.path(".var/app/org.gimp.GIMP/config/tinct"))
    assert os.path.isfile(os.path.join(m.plugin_dir("native3"), "tinct.py"))
    assert os.path.isfile(m.path(".config/tinct/engine.json"))
    code, out, _ = m.run("--uninstall")
    assert code == 0
    assert not os.path.exists(m.path(".config/tinct"))


def test_uninstall_finds_a_gimp_dir_install_through_its_record(tmp_path):
    m = Machine(tmp_path, [])
    odd = m.add("portable/profile")
    m.install("--gimp-dir", odd, "--gimp-version", "3.0")
    code, out, _ = m.run("--uninstall")
    assert code == 0, out
    assert "removed Tinct" in out
    assert not os.path.exists(os.path.join(odd, "plug-ins")) and not os.path.exists(m.path(".config"))


# --- explicit profiles, listing, dry run ---------------------------------------------------

def test_gimp_dir_takes_any_folder_and_its_version_from_the_name_or_option(tmp_path):
    m = Machine(tmp_path, [])
    weird = m.add("chroot/tmp/tinct-gimp-x/home/.config/GIMP/3.0")
    m.install("--gimp-dir", weird)
    assert os.access(os.path.join(weird, "plug-ins", "tinct", "tinct.py"), os.X_OK)
    other = m.add("test-profile")
    code, _, err = m.run("--no-start", "--gimp-dir", other)
    assert code == 2 and "--gimp-version 3.0 or --gimp-version 2.10" in err
    m.install("--gimp-dir", other, "--gimp-version", "2.10")
    assert os.path.isfile(os.path.join(other, "plug-ins", "tinct_gimp2", "tinct_gimp2.py"))
    code, _, err = m.run("--no-start", "--gimp-dir", m.path("missing/3.0"))
    assert code == 2 and "is not a folder" in err


def test_list_shows_profiles_state_and_where_it_looked(tmp_path):
    m = Machine(tmp_path, ["native3", "flatpak3"])
    m.add(".config/GIMP/2.99")
    m.install("--gimp-dir", m.profiles["native3"])
    code, out, _ = m.run("--list")
    assert code == 0
    assert "GIMP 3.0 (Flatpak)" in out and "Tinct not installed" in out
    assert "Tinct %s installed" % VERSION in out
    assert "development preview" in out
    assert "Looked in: ~/.config/GIMP, ~/.var/app/org.gimp.GIMP/config/GIMP" in out


def test_dry_run_changes_nothing(tmp_path):
    m = Machine(tmp_path, ["native3", "flatpak3"])
    before = snapshot(m.home, m.runtime)
    code, out, _ = m.run("--dry-run")
    assert code == 0
    assert "would install %s" % m.plugin_dir("native3") in out
    assert "Engine settings to write" in out
    assert snapshot(m.home, m.runtime) == before
    m.install()
    code, out, _ = m.run("--uninstall", "--dry-run")
    assert code == 0 and "would remove" in out
    assert os.path.isfile(os.path.join(m.plugin_dir("native3"), "tinct.py"))


# --- bad input ----------------------------------------------------------------------------

def test_no_gimp_found_says_where_it_looked_and_how_to_name_one(tmp_path):
    m = Machine(tmp_path, [])
    before = snapshot(m.home)
    code, out, err = m.run("--no-start")
    assert code == 2
    assert "No GIMP profile found" in err
    assert m.path(".config/GIMP") in err and m.path("snap/gimp/current/.config/GIMP") in err
    assert "--gimp-dir" in err
    assert snapshot(m.home) == before


def test_only_unsupported_gimps_are_skipped_with_the_reason(tmp_path):
    m = Machine(tmp_path, [])
    m.add(".config/GIMP/2.8")
    m.add(".config/GIMP/4.0")
    before = snapshot(m.home)
    code, out, err = m.run("--no-start")
    assert code == 2
    assert "GIMP 2.8 is too old" in out and "GIMP 4.0 is newer than this Tinct knows" in out
    assert "nothing was changed" in err
    assert snapshot(m.home) == before


def test_a_read_only_profile_is_reported_and_left_untouched(tmp_path):
    m = Machine(tmp_path, ["native3", "native2"])
    os.makedirs(os.path.join(m.profiles["native2"], "plug-ins"))
    locked = os.path.join(m.profiles["native2"], "plug-ins")
    with read_only(locked):
        code, out, _ = m.run("--no-start")
        assert os.listdir(locked) == []
    assert code == 1
    assert "GIMP 2.10 at ~/.config/GIMP/2.10: not installed: the folder %s is read-only" % locked in out
    assert os.path.isfile(os.path.join(m.plugin_dir("native3"), "tinct.py"))  # the other GIMP still got it


def test_when_every_profile_is_read_only_no_settings_are_left_behind(tmp_path):
    m = Machine(tmp_path, ["native3"])
    before = snapshot(m.home, m.runtime)
    with read_only(m.profiles["native3"]):
        code, out, _ = m.run("--no-start")
    assert code == 1 and "read-only" in out
    assert snapshot(m.home, m.runtime) == before


def test_an_engine_python_without_tinct_changes_nothing(tmp_path):
    m = Machine(tmp_path, ["native3"])
    before = snapshot(m.home)
    code, _, err = m.run("--no-start", "--engine-python", str(tmp_path / "no-such-python"))
    assert code == 2
    assert "cannot be used" in err and "Nothing was changed" in err
    assert snapshot(m.home) == before
