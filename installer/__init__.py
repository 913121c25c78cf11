"""`tinct-install`: puts Tinct's GIMP plug-in into every GIMP profile on this machine.

profiles.py finds the profiles, payload.py knows the files, placement.py puts them in
(or takes them out) all at once, endpoint.py and engine_config.py write what the plug-in
reads to reach the engine, engine_check.py starts the engine once, actions.py runs the
steps, cli.py and the GUI (gui_*.py, gui/) present them.
"""
