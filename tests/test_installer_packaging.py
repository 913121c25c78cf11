"""A pip-installed (non-editable) tinct-install must carry the plug-in it places: setup.cfg's
package data for `installer` reaches every plug-in source through the `plugin_src` link, and
the installer reads its files from there."""

import configparser
import glob
import os

from installer import payload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALLER = os.path.join(ROOT, "installer")


def shipped_files():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    patterns = [p.strip() for p in cfg["options.package_data"]["installer"].split(",")]
    found = set()
    for pattern in patterns:
        for path in glob.glob(os.path.join(INSTALLER, pattern)):
            if os.path.isfile(path):
                found.add(os.path.relpath(path, INSTALLER).replace(os.sep, "/"))
    return found


def test_plugin_src_is_a_link_to_the_plugin_sources():
    link = os.path.join(INSTALLER, "plugin_src")
    assert os.path.islink(link) and os.readlink(link) == "../plugin"
    assert payload.source_root() == link


def test_package_data_covers_every_file_the_installer_places_and_the_page():
    shipped = shipped_files()
    needed = set()
    for variant in payload.VARIANTS:
        folder = payload.folder_name(variant)
        for f in payload.files_for(variant):
            rel = f.relpath if f.relpath.startswith(payload.CORE + "/") else folder + "/" + f.relpath
            needed.add("plugin_src/" + rel)
    assert needed - shipped == set()
    assert {"gui/index.html", "gui/app.js", "gui/style.css"} <= shipped
    assert not any("__pycache__" in f for f in shipped)
