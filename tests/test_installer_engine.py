"""tinct-install really starts the engine (through the plug-in's own client and the engine.json
it wrote), the installed plug-in core then finds and greets it, a re-install finds it running,
and uninstall stops it and takes every file away."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# onnxruntime (not Tinct) writes a telemetry device id under ~/.cache/Microsoft when the engine loads it.
ONNXRUNTIME_CACHE = os.path.join(".cache", "Microsoft")

pytestmark = pytest.mark.slow


@pytest.fixture
def machine(tmp_path):
    home = str(tmp_path / "home")
    profile = os.path.join(home, ".config", "GIMP", "3.0")
    flatpak = os.path.join(home, ".var", "app", "org.gimp.GIMP", "config", "GIMP", "3.0")
    os.makedirs(profile)
    os.makedirs(flatpak)
    runtime = tempfile.mkdtemp(prefix="trt-")  # short: Unix socket paths are limited to ~100 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINCT_", "GIMP2_", "GIMP3_", "XDG_"))}
    env.update(HOME=home, XDG_RUNTIME_DIR=runtime)
    state = {"home": home, "profile": profile, "flatpak": flatpak, "runtime": runtime, "env": env, "pids": []}
    yield state
    for pid in state["pids"]:  # never leave an engine behind, even when an assertion failed
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    shutil.rmtree(runtime, ignore_errors=True)


def installer(machine, *args):
    proc = subprocess.run([sys.executable, "-m", "installer"] + list(args), cwd=ROOT, env=machine["env"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    return proc.returncode, proc.stdout


def greet_from_plugin(machine, profile="profile"):
    """hello() through the installed tinct_core (no autostart), in a clean interpreter from '/'.
    The Flatpak plug-in gets the sandbox's XDG_CONFIG_HOME, so it reads its own engine.json."""
    folder = os.path.join(machine[profile], "plug-ins", "tinct")
    env = dict(machine["env"])
    if profile == "flatpak":
        env["XDG_CONFIG_HOME"] = os.path.join(machine["home"], ".var", "app", "org.gimp.GIMP", "config")
    code = ("import json, sys; sys.path.insert(0, %r); from tinct_core import client;"
            "c = client.EngineClient(autostart=False); h = c.hello();"
            "print(json.dumps({'pid': h['pid'], 'device': h['device'], 'client': client.__file__,"
            "'where': c.config.describe()}))" % folder)
    out = subprocess.check_output([sys.executable, "-c", code], cwd="/", env=env, timeout=60)
    return json.loads(out)


def files_under(root):
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ONNXRUNTIME_CACHE or rel.startswith(ONNXRUNTIME_CACHE + os.sep):
            continue
        found.update(os.path.normpath(os.path.join(rel, n)) for n in dirnames + filenames)
    return {p for p in found if p != ".cache" and not p.startswith(ONNXRUNTIME_CACHE)}


def test_install_starts_the_engine_and_uninstall_stops_it_without_a_trace(machine):
    before = files_under(machine["home"]) | {"@" + p for p in files_under(machine["runtime"])}
    code, out = installer(machine)
    # with a Flatpak GIMP among them, the socket lives where its sandbox sees it
    socket_path = os.path.join(machine["runtime"], "app", "org.gimp.GIMP", "tinct", "engine.sock")
    hello = None
    try:
        hello = greet_from_plugin(machine)
    finally:
        if hello:
            machine["pids"].append(hello["pid"])
    assert code == 0, out
    assert "Started the engine at unix:%s; it answered" % socket_path in out
    assert hello["device"] in ("cpu", "cuda") and "device: %s" % hello["device"] in out
    assert hello["where"] == "unix:" + socket_path
    assert hello["client"].startswith(os.path.join(machine["profile"], "plug-ins", "tinct", "tinct_core"))
    sandboxed = greet_from_plugin(machine, "flatpak")
    assert (sandboxed["pid"], sandboxed["where"]) == (hello["pid"], hello["where"])

    code, out = installer(machine, "--gimp-dir", machine["profile"])
    assert code == 0, out
    assert "reinstalled" in out and "already running at unix:%s and answered" % socket_path in out
    assert greet_from_plugin(machine)["pid"] == hello["pid"]  # the same engine: not started twice

    code, out = installer(machine, "--uninstall")
    assert code == 0, out
    assert "Stopped the engine (pid %d)" % hello["pid"] in out
    deadline = time.time() + 20
    while time.time() < deadline and _alive(hello["pid"]):
        time.sleep(0.2)
    assert not _alive(hello["pid"])
    after = files_under(machine["home"]) | {"@" + p for p in files_under(machine["runtime"])}
    assert after == before


def test_an_engine_that_cannot_start_is_reported_plainly(machine):
    """A broken engine.json command: the plug-in is installed, the report says the engine did not
    answer and why, and the exit status says something needs attention."""
    fake_python = os.path.join(machine["home"], "python-without-engine")
    with open(fake_python, "w") as fh:
        fh.write("#!/bin/sh\ncase \"$1\" in -c) exec %s \"$@\";; esac\necho 'no engine here' >&2\nexit 3\n"
                 % sys.executable)
    os.chmod(fake_python, 0o755)
    code, out = installer(machine, "--gimp-dir", machine["profile"], "--engine-python", fake_python)
    assert code == 1, out
    assert "installed Tinct" in out
    assert "The engine did not answer" in out and "no engine here" in out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie of an exited engine counts as gone
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_adding_a_flatpak_gimp_later_moves_the_running_engine(machine):
    """The first install (native GIMP only) starts the engine on the native socket; installing into a
    Flatpak GIMP later moves the socket where the sandbox sees it, so the old engine must stop and a
    new one answer at the new address."""
    code, out = installer(machine, "--gimp-dir", machine["profile"])
    assert code == 0, out
    first = greet_from_plugin(machine)
    machine["pids"].append(first["pid"])
    assert first["where"] == "unix:" + os.path.join(machine["runtime"], "tinct", "engine.sock")

    code, out = installer(machine, "--gimp-dir", machine["flatpak"])
    second = greet_from_plugin(machine)
    machine["pids"].append(second["pid"])
    assert code == 0, out
    assert "Stopped the engine (pid %d)" % first["pid"] in out and "The engine moves to socket" in out
    assert second["pid"] != first["pid"]
    assert second["where"] == "unix:" + os.path.join(machine["runtime"], "app", "org.gimp.GIMP", "tinct",
                                                      "engine.sock")
    assert greet_from_plugin(machine, "flatpak")["pid"] == second["pid"]
    code, out = installer(machine, "--uninstall")
    assert code == 0 and "Stopped the engine (pid %d)" % second["pid"] in out


def test_the_device_line_says_why_a_present_gpu_is_not_used(tmp_path, monkeypatch):
    """The GUI's device line: with an NVIDIA GPU present (nvidia-smi lists it) but onnxruntime
    lacking CUDA, it names the GPU and the package that fixes it."""
    from installer import engine_check

    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'\n")
    (tools / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (tools, os.pathsep, os.environ.get("PATH", "")))
    monkeypatch.setenv("HOME", str(tmp_path))  # onnxruntime's telemetry id goes here, not into the real home
    device, text = engine_check.device_info(sys.executable)
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert (device, text) == ("gpu", "GPU (CUDA: NVIDIA H100 80GB HBM3)")
    else:
        assert device == "cpu"
        assert "NVIDIA H100 80GB HBM3" in text and "pip install 'tinct[gpu]'" in text
    monkeypatch.setenv("PATH", str(tools.parent / "empty"))
    assert engine_check.device_info(sys.executable)[0] == "cpu"  # no nvidia-smi at all
