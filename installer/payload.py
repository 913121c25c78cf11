"""What goes into a GIMP profile: the plug-in files for each variant, with their modes.

The plug-in sources live in the repository's `plugin/` folder. `installer/plugin_src` is a
link to it, so a built wheel carries a copy as package data (setup.cfg) and an installed,
non-editable `tinct-install` finds the same files as a checkout does.

Installed layout, relative to `<profile>/plug-ins/`:
  GIMP 3.x:  tinct/tinct.py (0755, `#!/usr/bin/env python3`) + tinct/tinct_core/*.py (0644)
  GIMP 2.10: tinct_gimp2/tinct_gimp2.py (0755, `#!/usr/bin/env python2`) + tinct_gimp2/tinct_core/*.py
Both adapters put their own folder on sys.path when `tinct_core` is beside them.
"""

import os

from .profiles import GIMP2, GIMP3

HERE = os.path.dirname(os.path.abspath(__file__))

# variant -> (plug-in folder name under plug-ins/, entry script, shebang GIMP runs it with)
VARIANTS = {
    GIMP3: ("tinct", "tinct.py", "#!/usr/bin/env python3"),
    GIMP2: ("tinct_gimp2", "tinct_gimp2.py", "#!/usr/bin/env python2"),
}
CORE = "tinct_core"
SCRIPT_MODE = 0o755
FILE_MODE = 0o644
DIR_MODE = 0o755


class PayloadMissing(Exception):
    """The plug-in sources are not where this installer expects them (a broken installation)."""


class PayloadFile(object):
    """One file to place: its path relative to the plug-in folder, its bytes and its mode."""

    def __init__(self, relpath, data, mode):
        self.relpath = relpath
        self.data = data
        self.mode = mode


def source_root():
    """The folder holding tinct/, tinct_gimp2/ and tinct_core/ (package data, else the checkout)."""
    candidates = [os.path.join(HERE, "plugin_src"), os.path.join(os.path.dirname(HERE), "plugin")]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, CORE, "__init__.py")):
            return folder
    raise PayloadMissing("The Tinct plug-in files are missing (looked in %s); reinstall Tinct with pip."
                         % " and ".join(candidates))


def folder_name(variant):
    return VARIANTS[variant][0]


def script_name(variant):
    return VARIANTS[variant][1]


def files_for(variant, root=None):
    """[PayloadFile] for one variant, entry script first; relpaths use '/'."""
    root = root or source_root()
    folder, script, shebang = VARIANTS[variant]
    script_path = os.path.join(root, folder, script)
    if not os.path.isfile(script_path):
        raise PayloadMissing("The plug-in file %s is missing; reinstall Tinct with pip." % script_path)
    with open(script_path, "rb") as fh:
        files = [PayloadFile(script, with_shebang(fh.read(), shebang), SCRIPT_MODE)]
    core = os.path.join(root, CORE)
    for dirpath, dirnames, filenames in os.walk(core):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as fh:
                files.append(PayloadFile(rel, fh.read(), FILE_MODE))
    return files


def with_shebang(data, shebang):
    """The script with `shebang` as its first line (replacing any other shebang), LF line ends.

    GIMP on Linux and macOS runs the plug-in through its shebang; a CRLF after the interpreter
    name ("python3\\r") is the classic cause of a plug-in that silently never registers."""
    text = data.replace(b"\r\n", b"\n")
    if text.startswith(b"#!"):
        text = text.split(b"\n", 1)[1] if b"\n" in text else b""
    return shebang.encode("ascii") + b"\n" + text
