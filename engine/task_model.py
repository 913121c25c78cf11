"""The ONNX model behind one task besides colorization (damage detection, restoration), loaded
once and lazily: one piece of code for what engine/detect_damage.py's Detector and
engine/restore.py's Restorer both need, so that they find, check and report their model alike.

A subclass names its model (env var, shipped file, the task in the ONNX metadata) and how the
messages speak of it (its name, the CLI option that picks another one).
"""

import os

import numpy as np

from . import TinctError


def pad_to(arr, multiple):
    """arr (h, w) padded at the bottom and right to multiples of `multiple` (the network's size
    multiple): mirrored where the photo is large enough, else its edge repeated."""
    h, w = arr.shape
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return arr
    return np.pad(arr, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")


class TaskModel:
    """model_path: the argument, else the ENV variable, else DEFAULT. `runtime` loads it on first
    use and raises TinctError when it is missing or is not a Tinct model of TASK."""

    ENV = None  # environment variable naming another model
    DEFAULT = None  # the shipped model's path
    TASK = None  # the "task" the model's metadata must carry
    NAME = None  # how messages call the model, e.g. "restoration model"
    OPTION = None  # the CLI option that picks another one, e.g. "--restore-model"

    def __init__(self, model_path=None, device="auto", threads=None):
        self.model_path = model_path or os.environ.get(self.ENV) or self.DEFAULT
        self.device_request, self.threads = device, threads
        self._runtime = None

    @property
    def installed(self):
        return os.path.exists(self.model_path)

    @property
    def runtime(self):
        if self._runtime is None:
            from .runtime import ModelRuntime

            if not self.installed:  # (ModelRuntime's own message points at --model, the colorization model)
                raise TinctError("%s %s is missing; reinstall Tinct or pass %s" % (self.NAME, self.model_path,
                                                                                  self.OPTION))
            rt = ModelRuntime(self.model_path, self.device_request, self.threads)
            if rt.metadata.get("task") != self.TASK:
                raise TinctError("%s is not a Tinct %s" % (self.model_path, self.NAME))
            self._runtime = rt
        return self._runtime
