# -*- coding: utf-8 -*-
"""The Colorize settings (dialog / PDB arguments) and the remembered last settings.

`Colorize` (with the dialog) saves what the user chose; `Colorize again` loads it.
The file is `<tinct config dir>/last-colorize.json`; `TINCT_SETTINGS` overrides the path.
Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import

import json
import os
import sys

from .errors import TinctUserError

INSTANCES = ("auto", "none", "selection")
REFERENCES = ("none", "layer", "file")
DEVICES = ("auto", "cpu", "gpu")
SIZE_MIN, SIZE_MAX, SIZE_DEFAULT = 64, 2048, 256


class Settings(object):
    """Colorize options.

    instances:      "auto" (the engine finds people/objects), "none", or "selection"
                    (the active selection and channels named `Tinct instance …`)
    reference:      "none", "layer" (the `Tinct reference` layer, or reference_layer), or "file"
    reference_file: path of a reference image when reference == "file"
    size:           working resolution, the short side in pixels (multiple of 8)
    opacity:        the result layer's opacity (0..100) when Tinct creates it; a re-run
                    keeps whatever opacity the user set since
    device:         "auto", "cpu" or "gpu" (the engine reports which it uses)
    """

    FIELDS = ("instances", "reference", "reference_file", "size", "opacity", "device")

    def __init__(self, instances="auto", reference="none", reference_file="", size=SIZE_DEFAULT,
                 opacity=100.0, device="auto"):
        self.instances = instances
        self.reference = reference
        self.reference_file = reference_file or ""
        self.size = size
        self.opacity = opacity
        self.device = device
        self.validate()

    def validate(self):
        if self.instances not in INSTANCES:
            raise TinctUserError("Instances must be one of %s, not '%s'." % (", ".join(INSTANCES), self.instances))
        if self.reference not in REFERENCES:
            raise TinctUserError("Reference must be one of %s, not '%s'." % (", ".join(REFERENCES), self.reference))
        if self.device not in DEVICES:
            raise TinctUserError("Device must be one of %s, not '%s'." % (", ".join(DEVICES), self.device))
        try:
            size = int(self.size)
        except (TypeError, ValueError):
            raise TinctUserError("Working resolution must be a number of pixels, not '%s'." % (self.size,))
        if not SIZE_MIN <= size <= SIZE_MAX:
            raise TinctUserError("Working resolution must be between %d and %d pixels, not %d."
                                 % (SIZE_MIN, SIZE_MAX, size))
        self.size = int(round(size / 8.0)) * 8
        try:
            opacity = float(self.opacity)
        except (TypeError, ValueError):
            raise TinctUserError("Opacity must be a number from 0 to 100, not '%s'." % (self.opacity,))
        if not 0.0 <= opacity <= 100.0:
            raise TinctUserError("Opacity must be from 0 to 100, not %g." % opacity)
        self.opacity = opacity
        if self.reference == "file" and not self.reference_file:
            raise TinctUserError("Reference is set to 'file' but no reference file was chosen.")
        return self

    def to_dict(self):
        return dict((k, getattr(self, k)) for k in self.FIELDS)

    @classmethod
    def from_dict(cls, data):
        known = dict((k, v) for k, v in (data or {}).items() if k in cls.FIELDS)
        return cls(**known)

    def __repr__(self):
        return "Settings(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.FIELDS)


def config_dir():
    """Tinct's per-user configuration directory (the same one the engine config lives in)."""
    if sys.platform.startswith("win"):
        base = os.environ.get("APPDATA") or os.path.expanduser("~")
        return os.path.join(base, "tinct")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Application Support/tinct")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "tinct")


def settings_path():
    return os.environ.get("TINCT_SETTINGS") or os.path.join(config_dir(), "last-colorize.json")


def load_last(path=None):
    """The last settings used with the dialog, or the defaults when there are none (or unreadable)."""
    path = path or settings_path()
    try:
        with open(path) as fh:
            return Settings.from_dict(json.load(fh))
    except (IOError, OSError, ValueError, TypeError, TinctUserError):
        return Settings()


def save_last(settings, path=None):
    """Remember settings for `Colorize again`; failures to write are not fatal."""
    path = path or settings_path()
    try:
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            os.makedirs(folder)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(settings.to_dict(), fh, indent=1, sort_keys=True)
        if sys.platform.startswith("win") and os.path.exists(path):
            os.remove(path)  # os.rename does not replace on Windows (no os.replace on Python 2.7)
        os.rename(tmp, path)
        return True
    except (IOError, OSError):
        return False
