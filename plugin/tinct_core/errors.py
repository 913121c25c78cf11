# -*- coding: utf-8 -*-
"""Errors the plug-in shows to the user as one plain message."""

from __future__ import absolute_import


class TinctUserError(Exception):
    """Something the user can act on; shown as a plain GIMP message, document unchanged."""


class TinctCancelled(TinctUserError):
    """The user cancelled the run."""

    def __init__(self, message="Tinct: cancelled. The image was not changed."):
        TinctUserError.__init__(self, message)
