"""tinct-install's view of a machine: which GIMP profiles it finds in every layout (Linux,
Flatpak, Snap, macOS, Windows, GIMP3_/GIMP2_DIRECTORY), which variant each takes or why it is
skipped, and how each mix of sandboxes reaches the engine."""

import os
import shutil
import sys
import tempfile

import pytest

from installer import endpoint, engine_config, profiles
from installer.profiles import GIMP2, GIMP3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(home, *rel):
    path = os.path.join(str(home), *rel)
    os.makedirs(path)
    return path


def found(home, env=None, platform="linux"):
    env = dict(env or {}, HOME=str(home))
    result, looked = profiles.find_profiles(env, str(home), platform)
    return [(os.path.relpath(p.path, str(home)), p.version, p.packaging, p.variant) for p in result], looked


@pytest.mark.parametrize("version, variant", [("3.0", GIMP3), ("3.2", GIMP3), ("3.x", GIMP3), ("2.10", GIMP2),
                                              ("2.99", None), ("2.8", None), ("4.0", None), ("stable", None)])
def test_versions_map_to_a_variant_or_a_reason(version, variant):
    got, reason = profiles.classify_version(version)
    assert got == variant
    assert (reason is None) == (variant is not None)
    if version == "2.99":
        assert "development preview" in reason
    if version == "2.8":
        assert "too old" in reason
    if version == "4.0":
        assert "newer" in reason


def test_linux_flatpak_and_snap_layouts_are_all_found(tmp_path):
    make(tmp_path, ".config/GIMP/3.0")
    make(tmp_path, ".config/GIMP/2.10")
    make(tmp_path, ".config/GIMP/sessions-backup")  # not a version: ignored
    make(tmp_path, ".var/app/org.gimp.GIMP/config/GIMP/3.0")
    make(tmp_path, "snap/gimp/current/.config/GIMP/2.10")
    got, looked = found(tmp_path)
    assert got == [(".config/GIMP/3.0", "3.0", "native", GIMP3),
                   (".config/GIMP/2.10", "2.10", "native", GIMP2),
                   (".var/app/org.gimp.GIMP/config/GIMP/3.0", "3.0", "flatpak", GIMP3),
                   ("snap/gimp/current/.config/GIMP/2.10", "2.10", "snap", GIMP2)]
    assert os.path.join(str(tmp_path), "snap/gimp/current/.config/GIMP") in looked


def test_xdg_config_home_moves_the_native_profiles(tmp_path):
    make(tmp_path, "elsewhere/GIMP/3.0")
    make(tmp_path, ".config/GIMP/2.10")  # not looked at when XDG_CONFIG_HOME says otherwise
    got, _ = found(tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "elsewhere")})
    assert got == [("elsewhere/GIMP/3.0", "3.0", "native", GIMP3)]


def test_macos_layout(tmp_path):
    make(tmp_path, "Library/Application Support/GIMP/3.0")
    make(tmp_path, "Library/Application Support/GIMP/2.10")
    make(tmp_path, ".config/GIMP/3.0")  # a Linux folder means nothing on a Mac
    got, looked = found(tmp_path, platform="darwin")
    assert got == [("Library/Application Support/GIMP/3.0", "3.0", "native", GIMP3),
                   ("Library/Application Support/GIMP/2.10", "2.10", "native", GIMP2)]
    assert looked == [os.path.join(str(tmp_path), "Library", "Application Support", "GIMP")]


def test_windows_layout_uses_appdata(tmp_path):
    make(tmp_path, "AppData/Roaming/GIMP/3.0")
    make(tmp_path, "Roam2/GIMP/2.10")
    got, _ = found(tmp_path, platform="win32")
    assert got == [("AppData/Roaming/GIMP/3.0", "3.0", "native", GIMP3)]
    got, _ = found(tmp_path, {"APPDATA": str(tmp_path / "Roam2")}, platform="win32")
    assert got == [("Roam2/GIMP/2.10", "2.10", "native", GIMP2)]


def test_gimp_directory_variables_are_honored_first_and_not_duplicated(tmp_path):
    portable = make(tmp_path, "portable-gimp-profile")
    old = make(tmp_path, "old-profile")
    make(tmp_path, ".config/GIMP/3.0")
    env = {"GIMP3_DIRECTORY": portable, "GIMP2_DIRECTORY": old}
    got, looked = found(tmp_path, env)
    assert got[:2] == [("portable-gimp-profile", "3.x", "native", GIMP3), ("old-profile", "2.10", "native", GIMP2)]
    assert got[2][0] == ".config/GIMP/3.0"
    assert looked[0].endswith("(GIMP3_DIRECTORY)")
    # the same folder named twice is one profile
    got, _ = found(tmp_path, {"GIMP3_DIRECTORY": os.path.join(str(tmp_path), ".config/GIMP/3.0")})
    assert [g[0] for g in got] == [".config/GIMP/3.0"]


def test_unsupported_profiles_are_listed_with_their_reason(tmp_path):
    make(tmp_path, ".config/GIMP/2.99")
    result, _ = profiles.find_profiles({"HOME": str(tmp_path)}, str(tmp_path), "linux")
    assert [p.supported for p in result] == [False]
    assert "GIMP 3.0 or later" in result[0].reason


def test_nothing_found_says_where_it_looked(tmp_path):
    got, looked = found(tmp_path)
    assert got == []
    assert len(looked) == 3 and all(str(tmp_path) in x for x in looked)


def test_gimp_dir_version_comes_from_the_name_or_the_option(tmp_path):
    env = {"HOME": str(tmp_path)}
    p = profiles.profile_for_dir(str(tmp_path / "chroot/home/.config/GIMP/3.0"), env=env)
    assert (p.version, p.variant, p.origin) == ("3.0", GIMP3, "--gimp-dir")
    p = profiles.profile_for_dir(str(tmp_path / "x/2.10/plug-ins"), env=env)  # the plug-ins folder means its profile
    assert (os.path.basename(p.path), p.variant) == ("2.10", GIMP2)
    assert profiles.profile_for_dir(str(tmp_path / "test-profile"), env=env) is None
    p = profiles.profile_for_dir(str(tmp_path / "test-profile"), "2.10", env=env)
    assert p.variant == GIMP2
    p = profiles.profile_for_dir(str(tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0"), env=env)
    assert p.packaging == "flatpak"


# --- how each mix of GIMPs reaches the engine ---------------------------------------------

def test_native_gimps_use_the_runtime_socket_and_the_config_token(tmp_path):
    rt = make(tmp_path, "rt")
    ep = endpoint.plan_endpoint({"native"}, {"XDG_RUNTIME_DIR": rt}, str(tmp_path), "linux")
    assert ep.socket == os.path.join(rt, "tinct", "engine.sock") and ep.port is None
    assert ep.token_file == os.path.join(str(tmp_path), ".config", "tinct", "token")
    assert ep.overrides == []


@pytest.fixture
def short_runtime_dir():
    """A runtime folder with a short path: pytest's tmp paths grow with its run counter, and
    past MAX_SOCKET_PATH a plan (rightly) falls back to another socket."""
    rt = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield rt
    shutil.rmtree(rt, ignore_errors=True)


def test_flatpak_gets_a_socket_inside_its_app_folder_and_the_override_command(tmp_path, short_runtime_dir):
    rt = short_runtime_dir
    ep = endpoint.plan_endpoint({"native", "flatpak"}, {"XDG_RUNTIME_DIR": rt}, str(tmp_path), "linux")
    assert ep.socket == os.path.join(rt, "app", "org.gimp.GIMP", "tinct", "engine.sock")
    assert ep.token_file == os.path.join(str(tmp_path), ".var/app/org.gimp.GIMP/config/tinct/token")
    assert ep.overrides == ["flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP"]
    cfg = engine_config.config_for("/usr/bin/python3", ep, "flatpak")
    assert cfg["command"][:2] == ["flatpak-spawn", "--host"]


def test_flatpak_without_a_runtime_folder_falls_back_to_loopback_tcp(tmp_path):
    ep = endpoint.plan_endpoint({"flatpak"}, {}, str(tmp_path), "linux")
    assert (ep.socket, ep.port, ep.host) == (None, endpoint.DEFAULT_PORT, "127.0.0.1")


def test_snap_and_flatpak_together_share_the_snap_folder(tmp_path, short_runtime_dir):
    rt = short_runtime_dir
    ep = endpoint.plan_endpoint({"flatpak", "snap"}, {"XDG_RUNTIME_DIR": rt}, str(tmp_path), "linux")
    assert ep.socket == os.path.join(rt, "snap.gimp", "tinct", "engine.sock")
    assert any("--filesystem=xdg-run/snap.gimp/tinct" in o for o in ep.overrides)
    assert any("Snap GIMP cannot start" in n for n in ep.notes)
    assert engine_config.config_for("/p", ep, "snap")["command"] is None


def test_windows_uses_loopback_tcp_and_appdata(tmp_path):
    ep = endpoint.plan_endpoint({"native"}, {"APPDATA": str(tmp_path / "R")}, str(tmp_path), "win32")
    assert ep.port == endpoint.DEFAULT_PORT and ep.socket is None
    assert ep.token_file == os.path.join(str(tmp_path), "R", "tinct", "token")
    assert engine_config.host_config_path({"APPDATA": "C:\\U"}, "h", "win32").endswith("engine.json")


def test_a_socket_path_too_long_for_af_unix_becomes_tcp(tmp_path):
    rt = make(tmp_path, "r" * 90)
    ep = endpoint.plan_endpoint({"native"}, {"XDG_RUNTIME_DIR": rt}, str(tmp_path), "linux")
    assert ep.socket is None and ep.port == endpoint.DEFAULT_PORT


def test_paths_agree_with_the_plugin_client_config(tmp_path, monkeypatch):
    """The installer writes engine.json where plugin/tinct_core/config.py reads it, with its port."""
    sys.path.insert(0, os.path.join(ROOT, "plugin"))
    try:
        from tinct_core import config as client_config
    finally:
        sys.path.remove(os.path.join(ROOT, "plugin"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", make(tmp_path, "rt"))
    monkeypatch.delenv("TINCT_ENGINE_CONFIG", raising=False)
    env = dict(os.environ)
    assert engine_config.host_config_path(env, str(tmp_path), sys.platform) == client_config.config_path()
    ep = endpoint.plan_endpoint({"native"}, env, str(tmp_path), sys.platform)
    assert ep.socket == client_config.default_socket()
    assert ep.token_file == client_config.default_token_file()
    assert endpoint.DEFAULT_PORT == client_config.DEFAULT_PORT
    monkeypatch.setenv("TINCT_ENGINE_CONFIG", str(tmp_path / "custom.json"))
    assert engine_config.host_config_path(dict(os.environ), str(tmp_path), sys.platform) == client_config.config_path()
