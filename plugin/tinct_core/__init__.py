# -*- coding: utf-8 -*-
"""Tinct's shared GIMP-side core (stdlib only, Python 2.7 and 3).

The GIMP 3 plug-in (tinct/tinct.py) and the GIMP 2.10 plug-in
(tinct_gimp2/tinct_gimp2.py) are thin adapters that describe the document to
this core through a `Host` (see job.py); the core decides layer roles, collects
hints, builds the engine request, and places the result.
"""

__version__ = "0.1.0"
