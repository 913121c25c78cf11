"""Install and uninstall as a sequence of steps the CLI and the GUI both run.

Each step reports progress through a callback and each profile gets a result with a
plain sentence. Nothing here prints: `cli.py` and `gui_api.py` present the Report.
Order matters for "no half-finished install": every check runs before the first write,
the host engine.json is written before any profile (and removed again when no profile
took Tinct), and each profile is swapped in all at once (placement.py).
"""

import os
import sys
import time

from . import engine_check, payload, placement
from .endpoint import native_socket_dir, plan_endpoint
from .engine_config import (Record, config_for, host_config_path, remove_empty_dirs, RUNTIME_FILES,
                            sandbox_config_path, write_json)
from .profiles import find_profiles

try:
    from engine import __version__ as TINCT_VERSION
except ImportError:  # pragma: no cover - the installer always ships with the engine package
    TINCT_VERSION = "unknown"


class Options(object):
    """What to do. env/home/platform default to this machine; tests pass fake ones."""

    def __init__(self, profiles=None, engine_python=None, dry_run=False, start_engine=True,
                 env=None, home=None, platform=None, explicit=False):
        self.env = dict(os.environ if env is None else env)
        self.home = home or self.env.get("HOME") or os.path.expanduser("~")
        self.platform = platform or sys.platform
        self.profiles = profiles          # None: every profile found
        self.explicit = explicit          # profiles came from --gimp-dir
        self.engine_python = engine_python or sys.executable
        self.dry_run = dry_run
        self.start_engine = start_engine


class ProfileResult(object):
    def __init__(self, profile, status, message, folder=None):
        self.profile = profile
        self.status = status      # installed upgraded reinstalled removed skipped failed not-installed planned
        self.message = message
        self.folder = folder

    @property
    def ok(self):
        return self.status not in ("failed",)

    def to_dict(self):
        return {"profile": self.profile.to_dict(), "status": self.status, "message": self.message,
                "folder": self.folder}


class Report(object):
    def __init__(self, action):
        self.action = action
        self.results = []
        self.looked = []
        self.configs = []
        self.endpoint = None
        self.engine = None            # engine_check.EngineStatus or None
        self.notes = []
        self.overrides = []
        self.error = None             # a reason the whole action could not run (nothing was changed)

    @property
    def exit_code(self):
        if self.error:
            return 2
        if any(r.status == "failed" for r in self.results):
            return 1
        if self.engine is not None and not self.engine.ok:
            return 1
        return 0

    def to_dict(self):
        return {"action": self.action, "results": [r.to_dict() for r in self.results], "looked": self.looked,
                "configs": self.configs, "endpoint": self.endpoint.describe() if self.endpoint else None,
                "engine": self.engine.to_dict() if self.engine else None, "notes": self.notes,
                "overrides": self.overrides, "error": self.error, "exit_code": self.exit_code}


def _quiet(fraction, message):
    pass


def discover(options):
    """(profiles, folders looked in) for the options: the explicit ones, else every one found."""
    if options.profiles is not None:
        return list(options.profiles), []
    return find_profiles(options.env, options.home, options.platform)


def no_gimp_message(looked):
    return ("No GIMP profile found. Looked in:\n  " + "\n  ".join(looked)
            + "\nStart GIMP once so it creates its profile, or name the profile folder: "
              "tinct-install --gimp-dir ~/.config/GIMP/3.0")


def install(options, progress=_quiet):
    report = Report("install")
    profiles, report.looked = discover(options)
    if not profiles:
        report.error = no_gimp_message(report.looked)
        return report
    supported = []
    for profile in profiles:
        if profile.supported:
            supported.append(profile)
        else:
            report.results.append(ProfileResult(profile, "skipped", "skipped: %s." % profile.reason))
    if not supported:
        report.error = "No GIMP here can take Tinct (see the reasons above); nothing was changed."
        return report

    progress(0.02, "Checking the engine's Python (%s)" % options.engine_python)
    problem = engine_check.python_problem(options.engine_python)
    if problem:
        report.error = problem + " Nothing was changed."
        return report
    try:
        files = {variant: payload.files_for(variant) for variant in {p.variant for p in supported}}
    except payload.PayloadMissing as exc:
        report.error = str(exc)
        return report

    ready = []
    for profile in supported:
        try:
            placement.preflight(profile)
            ready.append(profile)
        except placement.PlacementError as exc:
            report.results.append(ProfileResult(profile, "failed", "not installed: %s." % exc))

    host_config = host_config_path(options.env, options.home, options.platform)
    record = Record.beside(host_config)
    packagings = {p.packaging for p in ready} | record.packagings() | {"native"}
    endpoint = report.endpoint = plan_endpoint(packagings, options.env, options.home, options.platform)
    report.notes.extend(endpoint.notes)
    report.overrides.extend(endpoint.overrides)

    if options.dry_run:
        for profile in ready:
            previous, _ = placement.existing_install(profile)
            verb = "would install" if previous is None else "would replace %s with %s in" % (previous, TINCT_VERSION)
            report.results.append(ProfileResult(profile, "planned", "%s %s" % (
                verb, placement.target_folder(profile)), placement.target_folder(profile)))
        report.configs = [host_config] + sorted({sandbox_config_path(p.packaging, options.home) for p in ready
                                                 if p.packaging != "native"})
        return report
    if not ready:
        return report

    host_existed = os.path.isfile(host_config)
    host_before = _read_bytes(host_config) if host_existed else None
    if host_existed and engine_check.address_of(host_config, options.env) not in (None, endpoint.address()):
        # an engine at the old address would hold the one-engine-per-user lock: the new one could not start
        progress(0.08, "Stopping the engine at its old address")
        moved = engine_check.stop(host_config, options.env)
        if moved is not None:
            report.notes.append(moved.message + " The engine moves to %s." % endpoint.describe())
    progress(0.1, "Writing the engine settings to %s" % host_config)
    try:
        created = write_json(host_config, config_for(options.engine_python, endpoint))
    except OSError as exc:
        report.error = "Cannot write the engine settings %s (%s); nothing was installed." % (
            host_config, exc.strerror or exc)
        return report
    record.add_file(host_config, created)
    report.configs.append(host_config)
    engine_folders = [os.path.dirname(p) for p in (endpoint.socket, endpoint.token_file) if p]
    engine_folders.append(native_socket_dir(options.env, options.platform))  # its lock and log
    for folder in engine_folders:
        record.add_file(None, _missing_folders(folder))

    for i, profile in enumerate(ready):
        progress(0.15 + 0.6 * i / len(ready), "Installing into %s" % profile.label)
        report.results.append(_install_one(profile, files[profile.variant], endpoint, options, record, report))

    installed = [r for r in report.results if r.status in ("installed", "upgraded", "reinstalled")]
    if not installed and not record.profiles:
        # nothing took Tinct: leave the engine settings as they were
        _restore(host_config, host_before, record.dirs)
        report.configs = []
        return report
    try:
        record.save()
    except OSError as exc:
        report.notes.append("Could not write the install record %s (%s); uninstall will still find the "
                            "profiles by their manifests." % (record.path, exc.strerror or exc))

    if options.start_engine:
        progress(0.8, "Starting the engine once to check that it answers")
        report.engine = engine_check.start_and_check(host_config, options.env)
    progress(1.0, "Done")
    return report


def _install_one(profile, files, endpoint, options, record, report):
    """Install into one profile; its sandbox engine.json goes in first and out again on failure."""
    sandbox_config = sandbox_config_path(profile.packaging, options.home) if profile.packaging != "native" else None
    config_backup = None
    created = []
    try:
        if sandbox_config:
            config_backup = _read_bytes(sandbox_config)
            created = write_json(sandbox_config, config_for(options.engine_python, endpoint, profile.packaging))
        placed = placement.install(profile, TINCT_VERSION, files,
                                   extra_manifest={"engine_config": sandbox_config})
    except (OSError, placement.PlacementError) as exc:
        if sandbox_config:
            _restore(sandbox_config, config_backup, created)
        reason = exc if isinstance(exc, placement.PlacementError) else placement._plain_os_error(exc)
        return ProfileResult(profile, "failed", "not installed: %s; the profile is unchanged." % reason)
    if sandbox_config:
        record.add_file(sandbox_config, created)
        if sandbox_config not in report.configs:
            report.configs.append(sandbox_config)
    record.profiles[profile.path] = profile.packaging
    if placed.action == "upgraded":
        message = "upgraded Tinct %s to %s in %s" % (placed.previous, TINCT_VERSION, placed.folder)
    elif placed.action == "reinstalled":
        message = "reinstalled Tinct %s in %s (it was already there)" % (TINCT_VERSION, placed.folder)
    else:
        message = "installed Tinct %s in %s" % (TINCT_VERSION, placed.folder)
    return ProfileResult(profile, placed.action, message, placed.folder)


def _read_bytes(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _restore(path, backup, created):
    try:
        if backup is None:
            if os.path.exists(path):
                os.remove(path)
            remove_empty_dirs(created)
        else:
            with open(path, "wb") as fh:
                fh.write(backup)
    except OSError:
        pass


def uninstall(options, progress=_quiet):
    """Remove Tinct from the profiles (explicit ones, else every one found or recorded), then,
    when no profile keeps Tinct, the engine settings and the files the engine made."""
    report = Report("uninstall")
    host_config = host_config_path(options.env, options.home, options.platform)
    record = Record.beside(host_config)
    profiles, report.looked = discover(options)
    if options.profiles is None:
        known = {os.path.realpath(p.path) for p in profiles}
        for path, packaging in sorted(record.profiles.items()):
            if os.path.realpath(path) not in known and os.path.isdir(path):
                manifest = _any_manifest(path)
                if manifest:
                    from .profiles import Profile
                    profiles.append(Profile(path, manifest.get("gimp_version", "3.x"), packaging, origin="record"))
    if not profiles and not record.profiles and not record.existed:
        report.error = no_gimp_message(report.looked) if report.looked else "Tinct is not installed here."
        return report

    profiles = [p for p in profiles if p.supported]  # nothing of Tinct's can be in the others
    for i, profile in enumerate(profiles):
        progress(0.1 + 0.6 * i / max(1, len(profiles)), "Removing Tinct from %s" % profile.label)
        if options.dry_run:
            _, manifest = placement.existing_install(profile) if profile.supported else (None, None)
            status = "planned" if manifest else "not-installed"
            message = ("would remove %s" % placement.target_folder(profile)) if manifest else "Tinct is not installed here."
            report.results.append(ProfileResult(profile, status, message))
            continue
        report.results.append(_uninstall_one(profile, record))

    if options.dry_run:
        return report
    remaining = {p: k for p, k in record.profiles.items() if _any_manifest(p)}
    record.profiles = remaining
    sandbox_folders = [os.path.dirname(p) for p in record.files if p != host_config]
    for path in list(record.files):
        packaging = _packaging_of_config(path, options.home)
        still_used = any(k == packaging for k in remaining.values()) if packaging != "native" else bool(remaining)
        if not still_used and path != host_config:
            # only the copy: the token beside it may still serve the GIMPs that keep Tinct
            if _remove_file(path):
                report.configs.append(path)
            remove_empty_dirs([os.path.dirname(path)])
            record.files.remove(path)
    if remaining:
        record.save()
        return report

    progress(0.8, "Stopping the engine")
    engine_runtime = engine_check.state_dir(host_config, options.env) or native_socket_dir(options.env,
                                                                                          options.platform)
    report.engine = engine_check.stop(host_config, options.env)
    if report.engine is not None and report.engine.ok:
        _wait_for_lock_release(os.path.join(engine_runtime, "engine.lock"))
    endpoint_files = _endpoint_files(host_config)
    if _remove_file(host_config):
        report.configs.insert(0, host_config)
    for path in endpoint_files:
        _remove_file(path)
    for folder in [os.path.dirname(host_config), engine_runtime] + sandbox_folders:
        _remove_runtime_files(folder)
    _remove_file(record.path)
    folders = [os.path.dirname(p) for p in [host_config] + record.files + endpoint_files]
    folders += [engine_runtime] + sandbox_folders
    remove_empty_dirs(folders + record.dirs)
    progress(1.0, "Done")
    return report


def _uninstall_one(profile, record):
    if not profile.supported:
        return ProfileResult(profile, "skipped", "skipped: %s." % profile.reason)
    try:
        placed = placement.uninstall(profile)
    except placement.PlacementError as exc:
        return ProfileResult(profile, "failed", "not removed: %s." % exc)
    if placed.action == "not-installed":
        record.profiles.pop(profile.path, None)
        return ProfileResult(profile, "not-installed", "Tinct is not installed here.")
    record.profiles.pop(profile.path, None)
    message = "removed Tinct %s from %s" % (placed.previous or "", placed.folder)
    if placed.left:
        message += "; kept %d file(s) Tinct did not put there: %s" % (len(placed.left), ", ".join(placed.left))
    return ProfileResult(profile, "removed", message.replace("Tinct  from", "Tinct from"), placed.folder)


def _missing_folders(folder):
    """The folder and its parents that do not exist yet (the engine makes them when it starts)."""
    missing = []
    while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _any_manifest(profile_path):
    for variant in (payload.VARIANTS):
        folder = os.path.join(profile_path, "plug-ins", payload.folder_name(variant))
        manifest = placement.read_manifest(folder)
        if manifest:
            return manifest
    return None


def _packaging_of_config(path, home):
    for packaging in ("flatpak", "snap"):
        if path == sandbox_config_path(packaging, home):
            return packaging
    return "native"


def _endpoint_files(config_path):
    """The token file and the socket named in an engine.json (the engine makes both)."""
    from .engine_config import read_json

    data = read_json(config_path) or {}
    found = []
    for key in ("token_file", "socket"):
        if data.get(key):
            found.append(os.path.expanduser(data[key]))
    return found


def _remove_runtime_files(folder):
    for name in RUNTIME_FILES:
        path = os.path.join(folder, name)
        if name == "engine.lock" and _lock_held(path):
            continue  # an engine (for another config) still runs: its lock stays
        _remove_file(path)


def _wait_for_lock_release(path, timeout=15.0):
    """The engine acknowledges `shutdown` before it has exited; its lock goes when it has."""
    deadline = time.time() + timeout
    while _lock_held(path) and time.time() < deadline:
        time.sleep(0.1)


def _lock_held(path):
    """True when a running engine holds this lock file (the engine flocks it for its lifetime)."""
    try:
        import fcntl
    except ImportError:
        return False  # Windows: a held lock file cannot be removed anyway
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _remove_file(path):
    """True when the file was there and is gone now."""
    try:
        if os.path.lexists(path):
            os.remove(path)
            return True
    except OSError:
        pass
    return False
