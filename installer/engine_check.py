"""The engine as the installer sees it: is its Python usable, which device will it use,
does it start and answer, and stopping it (on uninstall, or when its address changes).

Starting and asking go through the plug-in's own client (tinct_core/client.py from the
files being installed) with the engine.json just written, so the check takes exactly the
path GIMP will take: autostart from the recorded command, readiness line, token, hello.
"""

import contextlib
import os
import subprocess
import sys
import tempfile

from . import payload

START_TIMEOUT = 120.0   # a cold start loads onnxruntime and the model


class EngineStatus(object):
    """ok: the engine answered (or was stopped, for `stop`); device: "cpu"/"cuda" when known."""

    def __init__(self, ok, message, started=False, device=None, detail=""):
        self.ok = ok
        self.message = message
        self.started = started
        self.device = device
        self.detail = detail

    def to_dict(self):
        return {"ok": self.ok, "message": self.message, "started": self.started, "device": self.device,
                "detail": self.detail}


def _run(cmd, env=None, timeout=60):
    """(exit status, output) of a short command; (None, reason) when it cannot run."""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              env=env, timeout=timeout, cwd=tempfile.gettempdir())
    except FileNotFoundError:
        return None, "%s does not exist" % cmd[0]
    except PermissionError:
        return None, "%s cannot be run (permission denied)" % cmd[0]
    except OSError as exc:
        return None, "%s cannot be run (%s)" % (cmd[0], exc.strerror or exc)
    except subprocess.TimeoutExpired:
        return None, "%s did not finish within %d s" % (" ".join(cmd[:4]), timeout)
    return proc.returncode, proc.stdout


def python_problem(python):
    """None when `python` can run Tinct's engine; else a sentence saying what to do."""
    # find_spec, not import: importing onnxruntime starts its telemetry, which writes into ~/.cache
    probe = ("import engine, importlib.util as u\n"
             "missing = [m for m in ('numpy', 'onnxruntime') if u.find_spec(m) is None]\n"
             "if missing: raise SystemExit('missing module(s): ' + ', '.join(missing))\n"
             "print(engine.__version__)")
    code, out = _run([python, "-c", probe], timeout=120)
    if code is None:
        return "The engine Python %s cannot be used: %s." % (python, out)
    if code != 0:
        last = (out.strip().splitlines() or ["no output"])[-1]
        return ("The engine Python %s cannot run Tinct's engine (%s). Install Tinct into it "
                "(%s -m pip install <tinct>) or pass --engine-python with the Python that has Tinct."
                % (python, last, python))
    return None


def device_info(python):
    """(device, sentence): which device the engine will use and why, for the report and the GUI."""
    code, out = _run([python, "-c", "import onnxruntime as o; print(','.join(o.get_available_providers()))"],
                     timeout=120)
    providers = out.strip().split(",") if code == 0 else []
    gpu_name = _nvidia_gpu()
    if code != 0:
        return "unknown", "unknown: the engine's Python cannot load onnxruntime (%s)" % (
            (out.strip().splitlines() or ["no output"])[-1])
    if "CUDAExecutionProvider" in providers and gpu_name:
        return "gpu", "GPU (CUDA: %s)" % gpu_name
    if "CUDAExecutionProvider" in providers:
        return "cpu", "CPU (onnxruntime has CUDA support, but nvidia-smi finds no NVIDIA GPU)"
    if gpu_name:
        return "cpu", ("CPU. This machine has %s, but the engine's onnxruntime has no CUDA support: "
                       "%s -m pip install 'tinct[gpu]'" % (gpu_name, python))
    return "cpu", "CPU (no CUDA GPU found)"


def _nvidia_gpu():
    code, out = _run(["nvidia-smi", "-L"], timeout=10)
    if code == 0 and out.strip():
        first = out.strip().splitlines()[0]
        return first.split(":", 1)[1].split("(")[0].strip() if ":" in first else first
    return None


def plugin_client():
    """(client, config) modules of the plug-in being installed; (None, reason) when they are missing."""
    root = payload.source_root()
    if not os.path.isfile(os.path.join(root, payload.CORE, "client.py")):
        return None, "this Tinct has no engine client (%s)" % os.path.join(root, payload.CORE, "client.py")
    if root not in sys.path:
        sys.path.insert(0, root)
    from tinct_core import client, config

    return client, config


def _clean_env(env):
    """The environment minus single-key overrides: check what the plug-in reads from the file."""
    env = dict(os.environ if env is None else env)
    for key in ("TINCT_SOCKET", "TINCT_PORT", "TINCT_TOKEN_FILE"):
        env.pop(key, None)
    return env


@contextlib.contextmanager
def _neutral_cwd():
    """Start the engine from a neutral folder, as GIMP would: an engine that only imports because the
    installer ran inside a source checkout must fail here, not later in GIMP."""
    before = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        yield
    finally:
        os.chdir(before)


def _client_for(config_path, env, autostart):
    client, config = plugin_client()
    if client is None:
        return None, None, config
    try:
        cfg = config.load(config_path, environ=_clean_env(env))
    except config.ConfigError as exc:
        return None, None, str(exc)
    return client, client.EngineClient(config=cfg, autostart=autostart, start_timeout=START_TIMEOUT), None


def start_and_check(config_path, env=None):
    """Start the engine the way the plug-in would (unless it already runs) and greet it."""
    client, engine, problem = _client_for(config_path, env, autostart=True)
    if problem:
        return EngineStatus(False, "The engine could not be checked: %s." % problem)
    try:
        with _neutral_cwd():
            hello = engine.hello()
    except client.EngineError as exc:
        return EngineStatus(False, "The engine did not answer: %s Run `tinct serve` to see its messages."
                            % str(exc).rstrip("."), detail=str(exc))
    device = hello.get("device")
    if engine.started_engine is None:
        return EngineStatus(True, "The engine was already running at %s and answered (device: %s)."
                            % (engine.config.describe(), device), device=device, detail=hello)
    return EngineStatus(True, "Started the engine at %s; it answered (engine %s, device: %s). It keeps running "
                        "for GIMP; `tinct stop` stops it." % (engine.config.describe(), hello.get("engine"), device),
                        started=True, device=device, detail=hello)


def stop(config_path, env=None):
    """Stop the engine that answers at this config's address. None when none was running."""
    if not os.path.isfile(config_path):
        return None
    client, engine, problem = _client_for(config_path, env, autostart=False)
    if problem:
        return None
    try:
        hello = engine.shutdown()
    except client.EngineUnavailable:
        return None
    except client.EngineError as exc:
        return EngineStatus(False, "The engine at %s could not be stopped: %s" % (engine.config.describe(), exc))
    return EngineStatus(True, "Stopped the engine (pid %s) at %s." % (hello.get("pid"), engine.config.describe()))


def address_of(config_path, env=None):
    """The address an engine.json points at ("unix:/..." or "127.0.0.1:port"), None when unreadable."""
    client, config = plugin_client()
    if client is None or not os.path.isfile(config_path):
        return None
    try:
        return config.load(config_path, environ=_clean_env(env)).describe()
    except config.ConfigError:
        return None


def state_dir(config_path, env=None):
    """The folder where the engine of this engine.json keeps its lock and log (the client's rule:
    beside the socket, else the runtime folder); None when it cannot be told."""
    client, config = plugin_client()
    if client is None or not os.path.isfile(config_path):
        return None
    try:
        cfg = config.load(config_path, environ=_clean_env(env))
    except config.ConfigError:
        return None
    if hasattr(cfg, "state_dir"):
        return cfg.state_dir()
    return config.runtime_dir()
