"""`tinct ui`: the interactive colorization window (issue 20).

points.py   color points <-> hint images (what `tinct colorize --hints` reads)
session.py  one photo being edited: previews, suggestions and Save through the running engine
server.py   the page's HTTP API on 127.0.0.1 (engine/pageserver.py), every request keyed
commands.py the `tinct ui` command: a pywebview window, or --serve for a web browser
page/       the page itself: plain HTML, JS and CSS, nothing fetched from outside the machine
"""
