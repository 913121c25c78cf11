"""The engine configuration the plug-in reads (`engine.json`) and the installer's own record.

engine.json keys (docs/architecture.md): python, command, socket, port, host, token_file.
The host copy lives in the Tinct config folder (`TINCT_ENGINE_CONFIG` overrides the path);
a sandboxed GIMP gets its own copy inside the sandbox's config folder.

The record (`install-record.json`, beside the host engine.json) lists what this installer
put outside the profiles' plug-in folders, so `--uninstall` can take exactly that away.
"""

import json
import os

from .endpoint import sandbox_config_dir, tinct_config_dir

CONFIG_NAME = "engine.json"
RECORD_NAME = "install-record.json"
# Files Tinct itself creates in its config folders while in use (removed with the last install).
RUNTIME_FILES = ("token", "engine.lock", "engine.log", "last-colorize.json")


def host_config_path(env, home, platform):
    return env.get("TINCT_ENGINE_CONFIG") or os.path.join(tinct_config_dir(env, home, platform), CONFIG_NAME)


def sandbox_config_path(packaging, home):
    folder = sandbox_config_dir(packaging, home)
    return os.path.join(folder, CONFIG_NAME) if folder else None


def engine_command(python):
    return [python, "-m", "engine", "serve"]


def config_for(python, endpoint, packaging="native"):
    """The engine.json a GIMP of this packaging reads."""
    command = engine_command(python)
    if packaging == "flatpak":
        command = ["flatpak-spawn", "--host"] + command
    elif packaging == "snap":
        command = None  # a Snap cannot start host programs; the engine must already run
    return {"python": python, "command": command, "socket": endpoint.socket, "port": endpoint.port,
            "host": endpoint.host, "token_file": endpoint.token_file}


def makedirs_tracked(folder, mode=0o700):
    """os.makedirs that returns the folders it created, outermost first (so uninstall can remove them)."""
    missing = []
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for path in reversed(missing):
        os.mkdir(path, mode)
    return list(reversed(missing))


def write_json(path, data, mode=0o644):
    """Write JSON atomically (temp file + rename). Returns the folders created for it."""
    created = makedirs_tracked(os.path.dirname(path))
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        remove_empty_dirs(created)
        raise
    return created


def read_json(path):
    """The parsed file, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def remove_empty_dirs(folders):
    """Remove these folders, innermost first, where they are empty; keep the rest."""
    for folder in sorted(set(folders), key=len, reverse=True):
        try:
            os.rmdir(folder)
        except OSError:
            pass


class Record(object):
    """The installer's record beside the host engine.json: profiles installed, files and folders made."""

    def __init__(self, path):
        self.path = path
        data = read_json(path) or {}
        self.profiles = dict(data.get("profiles", {}))      # profile path -> packaging
        self.files = list(data.get("files", []))            # engine.json copies written
        self.dirs = list(data.get("dirs", []))              # folders created for them
        self.existed = os.path.isfile(path)

    @classmethod
    def beside(cls, config_path):
        return cls(os.path.join(os.path.dirname(config_path), RECORD_NAME))

    def add_file(self, path, created_dirs):
        """Note a file written (None: only folders) and the folders made for it."""
        if path is not None and path not in self.files:
            self.files.append(path)
        for folder in created_dirs:
            if folder not in self.dirs:
                self.dirs.append(folder)

    def save(self):
        data = {"profiles": self.profiles, "files": self.files, "dirs": self.dirs}
        for folder in write_json(self.path, data, 0o600):
            if folder not in self.dirs:
                self.dirs.append(folder)
                write_json(self.path, dict(data, dirs=self.dirs), 0o600)

    def packagings(self):
        return set(self.profiles.values())
