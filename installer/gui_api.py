"""What the installer page can ask for: the GIMPs found, the engine's device, and install or
uninstall jobs it polls for progress.

The same object serves the pywebview window (as its js_api) and the local HTTP server
(gui_server.py), so the page behaves the same in both. A job runs actions.install or
actions.uninstall in a thread; only one runs at a time.
"""

import itertools
import threading

from . import actions, placement
from .engine_check import device_info
from .profiles import find_profiles

ACTIONS = ("install", "uninstall")


class GuiApi(object):
    def __init__(self, options):
        """options: an actions.Options template (env, home, platform, engine python, explicit profiles)."""
        self._options = options
        self._lock = threading.Lock()
        self._jobs = {}
        self._ids = itertools.count(1)
        self._device = None
        self._device_thread = threading.Thread(target=self._probe_device, daemon=True)
        self._device_thread.start()

    def _probe_device(self):
        try:
            self._device = device_info(self._options.engine_python)
        except Exception as exc:  # the page shows it; the installer still works
            self._device = ("unknown", "unknown (%s)" % exc)

    def _profiles(self):
        o = self._options
        if o.profiles is not None:
            return list(o.profiles), []
        return find_profiles(o.env, o.home, o.platform)

    # --- methods the page calls ---------------------------------------------------------
    def state(self):
        """The GIMPs found (with what is installed in each), where we looked, the engine's device."""
        profiles, looked = self._profiles()
        rows = []
        for p in profiles:
            row = p.to_dict()
            installed = placement.existing_install(p)[0] if p.supported else None
            row["installed"] = installed
            row["checked"] = p.supported
            rows.append(row)
        self._device_thread.join(timeout=0.05)
        device = self._device
        return {"profiles": rows, "looked": looked, "engine_python": self._options.engine_python,
                "device": device[0] if device else None,
                "device_text": device[1] if device else "checking...",
                "no_gimp": actions.no_gimp_message(looked) if not profiles else None,
                "busy": any(not j["done"] for j in self._jobs.values())}

    def start(self, action, paths):
        """Start installing into / removing from the profiles at `paths`; returns {"job": id} or {"error"}."""
        if action not in ACTIONS:
            return {"error": "unknown action %r" % (action,)}
        profiles, _ = self._profiles()
        by_path = {p.path: p for p in profiles}
        chosen = [by_path[p] for p in paths or [] if p in by_path]
        if not chosen:
            return {"error": "Tick at least one GIMP first."}
        with self._lock:
            if any(not j["done"] for j in self._jobs.values()):
                return {"error": "Another install or uninstall is still running."}
            job_id = str(next(self._ids))
            job = {"done": False, "fraction": 0.0, "message": "Starting", "steps": [], "report": None}
            self._jobs[job_id] = job
        thread = threading.Thread(target=self._run, args=(job, action, chosen), daemon=True)
        thread.start()
        return {"job": job_id}

    def poll(self, job_id):
        job = self._jobs.get(str(job_id))
        if job is None:
            return {"error": "no such job"}
        with self._lock:
            return {"done": job["done"], "fraction": job["fraction"], "message": job["message"],
                    "steps": list(job["steps"]), "report": job["report"]}

    # --- the job thread -------------------------------------------------------------------
    def _run(self, job, action, profiles):
        o = self._options
        options = actions.Options(profiles=profiles, engine_python=o.engine_python, dry_run=False,
                                  start_engine=o.start_engine, env=o.env, home=o.home, platform=o.platform,
                                  explicit=True)

        def progress(fraction, message):
            with self._lock:
                job["fraction"] = fraction
                job["message"] = message
                job["steps"].append(message)

        try:
            report = (actions.install if action == "install" else actions.uninstall)(options, progress)
            result = report.to_dict()
        except Exception as exc:  # shown on the page instead of a silent stall
            result = {"action": action, "results": [], "error": "%s: %s" % (type(exc).__name__, exc),
                      "exit_code": 1}
        with self._lock:
            job["report"] = result
            job["fraction"] = 1.0
            job["message"] = "Done" if not result.get("error") else "Stopped"
            job["done"] = True
