"""Where GIMP keeps its user profiles, and which of them Tinct can go into.

GIMP's profile is `<config>/GIMP/<major.minor>`; the config folder depends on the
platform and on how GIMP was packaged (native, Flatpak, Snap). Each profile found
becomes a `Profile` with the Tinct variant it takes ("gimp3", "gimp2") or the
reason it is skipped. Everything takes `env`, `home` and `platform` explicitly so
the tests can lay out any machine's home folder on any machine.
"""

import os
import re

FLATPAK_APP = "org.gimp.GIMP"
SNAP_NAME = "gimp"

GIMP3 = "gimp3"
GIMP2 = "gimp2"

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


class Profile(object):
    """One GIMP profile folder.

    path:     the profile folder (`.../GIMP/3.0`)
    version:  "3.0", "2.10", ... as named by the folder ("3.x" / "2.10" from GIMP3_/GIMP2_DIRECTORY)
    packaging: "native", "flatpak" or "snap" (decides how the sandbox reaches the engine)
    variant:  GIMP3, GIMP2, or None when Tinct cannot go into this GIMP
    reason:   why variant is None
    origin:   how it was found ("standard", "GIMP3_DIRECTORY", "--gimp-dir", ...)
    """

    def __init__(self, path, version, packaging="native", origin="standard"):
        self.path = os.path.abspath(path)
        self.version = version
        self.packaging = packaging
        self.origin = origin
        self.variant, self.reason = classify_version(version)

    @property
    def supported(self):
        return self.variant is not None

    @property
    def label(self):
        extra = {"flatpak": " (Flatpak)", "snap": " (Snap)"}.get(self.packaging, "")
        return "GIMP %s%s" % (self.version, extra)

    @property
    def plugins_dir(self):
        return os.path.join(self.path, "plug-ins")

    def to_dict(self):
        return {"path": self.path, "version": self.version, "packaging": self.packaging, "origin": self.origin,
                "variant": self.variant, "reason": self.reason, "label": self.label}

    def __repr__(self):
        return "Profile(%r, %r, %r)" % (self.path, self.version, self.packaging)


def classify_version(version):
    """(variant, None) for a GIMP Tinct supports, else (None, a reason in plain words)."""
    if version in ("3.x",):
        return GIMP3, None
    match = _VERSION.match(version or "")
    if not match:
        return None, "'%s' is not a GIMP version Tinct knows; pass --gimp-version 3.0 or 2.10" % version
    major, minor = int(match.group(1)), int(match.group(2))
    if major == 3:
        return GIMP3, None
    if (major, minor) == (2, 10):
        return GIMP2, None
    if (major, minor) == (2, 99):
        return None, ("GIMP 2.99 is a development preview of GIMP 3 whose plug-in interface changed before 3.0; "
                      "install GIMP 3.0 or later")
    if major < 2 or (major == 2 and minor < 10):
        return None, "GIMP %s is too old; Tinct needs GIMP 2.10 or 3.x" % version
    return None, "GIMP %s is newer than this Tinct knows (it supports 2.10 and 3.x); update Tinct" % version


def version_from_path(path):
    """The GIMP version a folder name says ("3.0", "2.10"), or None."""
    name = os.path.basename(os.path.normpath(path))
    return name if _VERSION.match(name) else None


def packaging_of(path, home):
    """"flatpak" / "snap" when the folder lies inside that sandbox's home data, else "native"."""
    real = os.path.abspath(path)
    flatpak = os.path.join(home, ".var", "app", FLATPAK_APP) + os.sep
    snap = os.path.join(home, "snap", SNAP_NAME) + os.sep
    if real.startswith(flatpak):
        return "flatpak"
    if real.startswith(snap):
        return "snap"
    return "native"


def search_roots(env, home, platform):
    """[(folder that holds <version> profile folders, packaging)] for this platform, in report order."""
    if platform.startswith("win"):
        appdata = env.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
        return [(os.path.join(appdata, "GIMP"), "native")]
    if platform == "darwin":
        return [(os.path.join(home, "Library", "Application Support", "GIMP"), "native")]
    config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return [(os.path.join(config, "GIMP"), "native"),
            (os.path.join(home, ".var", "app", FLATPAK_APP, "config", "GIMP"), "flatpak"),
            (os.path.join(home, "snap", SNAP_NAME, "current", ".config", "GIMP"), "snap")]


def override_dirs(env):
    """[(folder, version label, variable)] from GIMP3_DIRECTORY / GIMP2_DIRECTORY (GIMP's own overrides)."""
    found = []
    for var, version in (("GIMP3_DIRECTORY", "3.x"), ("GIMP2_DIRECTORY", "2.10")):
        value = env.get(var)
        if value:
            found.append((os.path.expanduser(value), version, var))
    return found


def find_profiles(env=None, home=None, platform=None):
    """(profiles found, folders looked in). Unsupported versions are included with their reason."""
    import sys

    env = os.environ if env is None else env
    home = home or env.get("HOME") or os.path.expanduser("~")
    platform = platform or sys.platform
    profiles, looked, seen = [], [], set()

    def add(profile):
        key = os.path.normcase(os.path.realpath(profile.path))
        if key not in seen:
            seen.add(key)
            profiles.append(profile)

    for folder, version, var in override_dirs(env):
        looked.append("%s (%s)" % (folder, var))
        if os.path.isdir(folder):
            add(Profile(folder, version_from_path(folder) or version, packaging_of(folder, home), origin=var))
    for root, packaging in search_roots(env, home, platform):
        looked.append(root)
        try:
            names = sorted(os.listdir(root), key=_version_key)
        except OSError:
            continue
        for name in names:
            path = os.path.join(root, name)
            if _VERSION.match(name) and os.path.isdir(path):
                add(Profile(path, name, packaging))
    return profiles, looked


def profile_for_dir(path, version=None, env=None, home=None):
    """The Profile of an explicit --gimp-dir, or None when its version cannot be told.

    The version comes from --gimp-version, else from the folder's name ("3.0", "2.10"). A path that
    ends in the profile's `plug-ins` folder means the profile itself."""
    env = os.environ if env is None else env
    home = home or env.get("HOME") or os.path.expanduser("~")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.basename(path) == "plug-ins":
        path = os.path.dirname(path)
    version = version or version_from_path(path)
    if not version:
        return None
    return Profile(path, version, packaging_of(path, home), origin="--gimp-dir")


def _version_key(name):
    match = _VERSION.match(name)
    return (0, -int(match.group(1)), -int(match.group(2))) if match else (1, 0, 0)
