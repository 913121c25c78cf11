"""Put the plug-in into one GIMP profile, or take it out, all or nothing.

Install writes every file into a staging folder beside the target (same file system), then
swaps it in with two renames; any failure removes the staging folder and puts the previous
install back. The plug-in folder carries a manifest (`tinct-install.json`) naming every file
and folder the installer made, so uninstall removes exactly those and nothing a user added.
"""

import datetime
import errno
import json
import os
import shutil

from . import payload

MANIFEST = "tinct-install.json"
# Files an older, hand-made install may have left loose in plug-ins/ (GIMP would load them twice).
LEGACY_LOOSE = ("tinct.py", "tinct_gimp2.py")
LEGACY_CORE = "tinct_core"
TINCT_MARKERS = (b"tinct_core", b"plug-in-tinct-colorize")


class PlacementError(Exception):
    """A profile Tinct could not be put into (or taken out of); the message says why in plain words."""


class Placed(object):
    """What happened in one profile: action is installed / upgraded / reinstalled / removed / ...,
    previous is the version replaced ("an unrecorded older version" when it had no manifest)."""

    def __init__(self, action, folder, previous=None, files=(), left=()):
        self.action = action
        self.folder = folder
        self.previous = previous
        self.files = list(files)
        self.left = list(left)


def target_folder(profile):
    return os.path.join(profile.plugins_dir, payload.folder_name(profile.variant))


def read_manifest(folder):
    try:
        with open(os.path.join(folder, MANIFEST)) as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def looks_like_tinct(path):
    """True for a file (or a plug-in folder's entry script) that is a Tinct plug-in."""
    if os.path.isdir(path):
        name = os.path.basename(path)
        path = os.path.join(path, name + ".py")
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return any(marker in head for marker in TINCT_MARKERS)


def existing_install(profile):
    """(version or description, manifest) of a Tinct already in this profile, or (None, None)."""
    folder = target_folder(profile)
    manifest = read_manifest(folder)
    if manifest:
        return manifest.get("tinct_version", "an unrecorded older version"), manifest
    if os.path.isdir(folder) and looks_like_tinct(folder):
        return "an unrecorded older version", None
    return None, None


def legacy_leftovers(profile):
    """Loose Tinct files from a hand-made install in plug-ins/ itself (not our folder)."""
    found = []
    for name in LEGACY_LOOSE:
        path = os.path.join(profile.plugins_dir, name)
        if os.path.isfile(path) and looks_like_tinct(path):
            found.append(path)
    core = os.path.join(profile.plugins_dir, LEGACY_CORE)
    if found and os.path.isdir(core):
        found.append(core)
    return found


def preflight(profile):
    """Raise PlacementError when installing into this profile cannot work; writes nothing."""
    if not os.path.isdir(profile.path):
        raise PlacementError("the profile folder %s does not exist (start this GIMP once so it creates it, "
                             "or check the path)" % profile.path)
    folder = target_folder(profile)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise PlacementError("%s exists and is not a folder; move it away and try again" % folder)
    if os.path.isdir(folder) and read_manifest(folder) is None and not looks_like_tinct(folder):
        raise PlacementError("%s exists but is not Tinct; move it away and try again" % folder)
    probe = profile.plugins_dir if os.path.isdir(profile.plugins_dir) else profile.path
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PlacementError("the folder %s is read-only for you; make it writable (or run as its owner)" % probe)


def install(profile, version, files, extra_manifest=None):
    """Install `files` (payload.PayloadFile) into the profile. Returns Placed. Raises PlacementError,
    leaving the profile as it was."""
    preflight(profile)
    plugins = profile.plugins_dir
    folder = target_folder(profile)
    previous, old_manifest = existing_install(profile)
    leftovers = legacy_leftovers(profile)
    if previous is None and leftovers:
        previous = "an unrecorded older version"
    created_plugins = False
    staging = old = None
    try:
        if not os.path.isdir(plugins):
            os.mkdir(plugins, payload.DIR_MODE)
            created_plugins = True
        staging = _fresh_name(plugins, ".tinct-staging")
        os.mkdir(staging, payload.DIR_MODE)
        made_dirs = _write_files(staging, files)
        manifest = {
            "tinct_version": version,
            "variant": profile.variant,
            "gimp_version": profile.version,
            "profile": profile.path,
            "packaging": profile.packaging,
            "folder": os.path.basename(folder),
            "files": [f.relpath for f in files] + [MANIFEST],
            "dirs": made_dirs,
            "created_plugins_dir": created_plugins or bool(old_manifest and old_manifest.get("created_plugins_dir")),
            "installed_at": datetime.datetime.now().replace(microsecond=0).isoformat(),
        }
        manifest.update(extra_manifest or {})
        with open(os.path.join(staging, MANIFEST), "w") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(os.path.join(staging, MANIFEST), payload.FILE_MODE)
        os.chmod(staging, payload.DIR_MODE)
        if os.path.isdir(folder):
            old = _fresh_name(plugins, ".tinct-previous")
            os.rename(folder, old)
        os.rename(staging, folder)
        staging = None
    except OSError as exc:
        if staging and os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        if old and os.path.isdir(old) and not os.path.exists(folder):
            os.rename(old, folder)
        if created_plugins:
            _rmdir_quietly(plugins)
        raise PlacementError(_plain_os_error(exc))
    if old:
        _rmtree(old)
    for path in leftovers:
        _remove_path(path)
    if previous is None:
        action = "installed"
    elif previous == version:
        action = "reinstalled"
    else:
        action = "upgraded"
    return Placed(action, folder, previous, [f.relpath for f in files])


def uninstall(profile):
    """Remove what the manifest lists (plus Python's __pycache__ beside those files). Returns Placed;
    files someone else added stay, and are named in Placed.left."""
    folder = target_folder(profile) if profile.variant else None
    manifest = read_manifest(folder) if folder else None
    if manifest is None:
        if folder and os.path.isdir(folder) and looks_like_tinct(folder):
            raise PlacementError("%s holds a Tinct without an install record (put there by hand?); "
                                 "delete that folder yourself" % folder)
        return Placed("not-installed", folder)
    try:
        for rel in manifest.get("files", []):
            path = os.path.join(folder, *rel.split("/"))
            if os.path.isfile(path) or os.path.islink(path):
                os.remove(path)
        dirs = [os.path.join(folder, *d.split("/")) for d in manifest.get("dirs", [])] + [folder]
        for d in sorted(dirs, key=len, reverse=True):
            cache = os.path.join(d, "__pycache__")
            if os.path.isdir(cache) and all(n.endswith((".pyc", ".pyo")) for n in os.listdir(cache)):
                shutil.rmtree(cache)
            _rmdir_quietly(d)
        left = []
        if os.path.isdir(folder):
            for dirpath, _, names in os.walk(folder):
                left.extend(os.path.join(dirpath, n) for n in names)
        elif manifest.get("created_plugins_dir"):
            _rmdir_quietly(profile.plugins_dir)
    except OSError as exc:
        raise PlacementError(_plain_os_error(exc))
    return Placed("removed", folder, manifest.get("tinct_version"), manifest.get("files", []), left)


def _write_files(root, files):
    """Write every PayloadFile under root with its mode; returns the sub-folders made ('/'-relative)."""
    made = []
    for f in files:
        parts = f.relpath.split("/")
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            path = os.path.join(root, *parts[:i])
            if not os.path.isdir(path):
                os.mkdir(path, payload.DIR_MODE)
                os.chmod(path, payload.DIR_MODE)
                made.append(rel)
        path = os.path.join(root, *parts)
        with open(path, "wb") as fh:
            fh.write(f.data)
        os.chmod(path, f.mode)
    return made


def _fresh_name(parent, prefix):
    n = 0
    while True:
        path = os.path.join(parent, "%s-%d-%d" % (prefix, os.getpid(), n))
        if not os.path.lexists(path):
            return path
        n += 1


def _rmtree(path):
    """Remove a folder tree, also where a read-only sub-folder would stop shutil.rmtree."""
    def make_writable_and_retry(func, failed, exc_info):
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            func(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _remove_path(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            _rmtree(path)
        else:
            os.remove(path)
    except OSError:
        pass


def _rmdir_quietly(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def _plain_os_error(exc):
    where = " (%s)" % exc.filename if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the profile is read-only for you%s; make it writable (or run as its owner)" % where
    if exc.errno == errno.ENOSPC:
        return "the disk is full%s" % where
    return "%s%s" % (exc.strerror or exc, where)
