"""`tinct-install` (also `python -m installer`): put Tinct into every GIMP on this machine.

This file only reads the command line and prints the Report that actions.py returns;
the GUI (`--gui`) runs the very same actions.
"""

import argparse
import os
import shutil
import sys

from . import actions, placement
from .engine_config import host_config_path, read_json
from .profiles import find_profiles, profile_for_dir

DESCRIPTION = """\
Install Tinct (AI colorization of black-and-white photos) into GIMP.

It finds every GIMP profile of yours (GIMP 3.x and 2.10; native, Flatpak and Snap
builds), puts the right plug-in into each one, writes the engine settings the
plug-in reads, then starts the engine once to check that it answers. After that,
restart GIMP: the menu is Filters > Colors > Tinct.

Examples:
  tinct-install                          install into every GIMP found
  tinct-install --list                   show the GIMPs found and what is installed
  tinct-install --dry-run                say what would be done, change nothing
  tinct-install --gimp-dir ~/.config/GIMP/3.0
                                         only this profile (any folder; its name or
                                         --gimp-version tells 3.x from 2.10)
  tinct-install --engine-python ~/venvs/tinct/bin/python
                                         run the engine with that Python
  tinct-install --uninstall              remove exactly what was installed
  tinct-install --gui                    the same in a window

Re-running is safe: it upgrades or reinstalls in place.
"""


def build_parser():
    parser = argparse.ArgumentParser(prog="tinct-install", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the GIMP profiles found and exit")
    parser.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")
    parser.add_argument("--gimp-dir", action="append", metavar="DIR",
                        help="a GIMP profile folder to use instead of searching (repeatable); "
                             "e.g. ~/.config/GIMP/3.0")
    parser.add_argument("--gimp-version", metavar="VERSION",
                        help="the GIMP version of --gimp-dir when its folder name does not say (3.0, 2.10)")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove what tinct-install put there (from its manifests) and the engine settings")
    parser.add_argument("--engine-python", metavar="PATH",
                        help="the Python that runs the engine (default: this one, %s)" % sys.executable)
    parser.add_argument("--no-start", action="store_true",
                        help="do not start the engine to check it (it starts by itself when GIMP needs it)")
    parser.add_argument("--gui", action="store_true",
                        help="the installer in a window (falls back to this command line without a display)")
    parser.add_argument("--serve-gui", action="store_true",
                        help="serve the installer page on http://127.0.0.1 for a web browser (the window "
                             "without pywebview); prints its address")
    parser.add_argument("--port", type=int, default=0, help="port for --serve-gui (default: any free one)")
    return parser


def normalize_version(text):
    """'3' -> '3.x', '2' -> '2.10'; anything else as given."""
    return {"3": "3.x", "2": "2.10"}.get(text, text)


def explicit_profiles(args):
    """The --gimp-dir profiles, or None when not given. Raises SystemExit(2) with a message."""
    if not args.gimp_dir:
        if args.gimp_version:
            fail("--gimp-version needs --gimp-dir (it says which GIMP that folder belongs to)")
        return None
    version = normalize_version(args.gimp_version) if args.gimp_version else None
    profiles = []
    for folder in args.gimp_dir:
        profile = profile_for_dir(folder, version)
        if profile is None:
            fail("cannot tell which GIMP %s belongs to from its name; add --gimp-version 3.0 or --gimp-version 2.10"
                 % folder)
        if not os.path.isdir(profile.path):
            fail("%s is not a folder. Pass the GIMP profile folder, e.g. ~/.config/GIMP/3.0 (GIMP creates it the "
                 "first time it starts)" % profile.path)
        profiles.append(profile)
    return profiles


def resolve_python(path):
    """An absolute path for --engine-python (GIMP starts the engine with a PATH of its own)."""
    path = os.path.expanduser(path)
    if os.sep not in path and (os.altsep is None or os.altsep not in path):
        return shutil.which(path) or path
    return os.path.abspath(path)


def fail(message):
    print("tinct-install: %s" % message, file=sys.stderr)
    raise SystemExit(2)


def home_short(path, home=None):
    home = home or os.path.expanduser("~")
    if path and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home):]
    return path


def print_list(profiles, looked):
    if not profiles:
        print(actions.no_gimp_message(looked))
        return 2
    print("GIMP profiles:")
    width = max(len(p.label) for p in profiles)
    for p in profiles:
        if not p.supported:
            state = "skipped: %s" % p.reason
        else:
            previous, _ = placement.existing_install(p)
            state = "Tinct %s installed" % previous if previous else "Tinct not installed"
            if previous and previous.startswith("an "):
                state = "%s of Tinct installed (an install will upgrade it)" % previous
        print("  %-*s  %s\n  %-*s  %s" % (width, p.label, home_short(p.path), width, "", state))
    if looked:
        print("Looked in: %s" % ", ".join(home_short(x) for x in looked))
    config = host_config_path(os.environ, os.path.expanduser("~"), sys.platform)
    data = read_json(config)
    if data:
        where = data.get("socket") or "%s:%s" % (data.get("host"), data.get("port"))
        print("Engine settings: %s (engine Python %s, address %s)" % (home_short(config), data.get("python"), where))
    else:
        print("Engine settings: none yet (%s is written on install)" % home_short(config))
    return 0


def print_report(report, dry_run=False):
    home = os.path.expanduser("~")
    if dry_run:
        print("Dry run: nothing is changed.")
    for r in report.results:
        print("%s at %s: %s" % (r.profile.label, home_short(r.profile.path, home), home_short(r.message, home)))
    if report.error:
        print(report.error, file=sys.stderr)
        return
    if report.configs:
        verb = {"install": "Engine settings %s: " % ("to write" if dry_run else "written"),
                "uninstall": "Engine settings removed: "}[report.action]
        print(verb + ", ".join(home_short(c, home) for c in report.configs))
    if report.endpoint and report.action == "install":
        print("The plug-in reaches the engine through %s." % home_short(report.endpoint.describe(), home))
    if report.engine is not None:
        print(report.engine.message)
    for note in report.notes:
        print("Note: " + note)
    if report.overrides:
        print("Run this once so the Flatpak GIMP can reach the engine:")
        for command in report.overrides:
            print("  " + command)
    done = [r for r in report.results if r.status in ("installed", "upgraded", "reinstalled")]
    if done and report.action == "install":
        print("Next: restart GIMP, open a photo and choose Filters > Colors > Tinct > Colorize...")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gui or args.serve_gui:
        from engine import interrupts

        from . import gui_window

        interrupts.install()   # the page serves until Ctrl+C
        handled = gui_window.run(args)
        if handled is not None:
            return handled
    profiles = explicit_profiles(args)
    if args.list:
        if profiles is None:
            found, looked = find_profiles()
            return print_list(found, looked)
        return print_list(profiles, [])
    options = actions.Options(profiles=profiles, engine_python=args.engine_python, dry_run=args.dry_run,
                              start_engine=not args.no_start, explicit=profiles is not None)
    if args.engine_python:
        options.engine_python = resolve_python(args.engine_python)
    try:
        if args.uninstall:
            report = actions.uninstall(options, progress=_progress_printer())
        else:
            report = actions.install(options, progress=_progress_printer())
    except KeyboardInterrupt:
        print("tinct-install: interrupted", file=sys.stderr)
        return 130
    print_report(report, dry_run=args.dry_run)
    return report.exit_code


def _progress_printer():
    """Step messages on a terminal only, so piped output stays the plain report."""
    if not sys.stderr.isatty():
        return actions._quiet

    def show(fraction, message):
        print("[%3d%%] %s" % (int(fraction * 100), message), file=sys.stderr)

    return show


if __name__ == "__main__":
    sys.exit(main())
