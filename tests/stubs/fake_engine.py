"""A fake engine client (the EngineClient.colorize() call shape) for the plug-in tests.

Colors deterministically: R = the photo's gray, G = gray / 2, B = gray / 4, in the
requested bits; records every request. fail= makes colorize raise that exception.
A painted damage mask is reported restored (info restored_pixels), as the real engine does.
detect_damage flags every pixel whose gray is at least 250 (white scratches on the print).
"""

from array import array


class FakeClient(object):
    def __init__(self, fail=None, max_pixels=None, device="cpu"):
        self.requests = []
        self.fail = fail
        self.max_pixels = max_pixels
        self._device = device

    def hello(self):
        return {"device": self._device}

    def detect_damage(self, photo, threshold=None, options=None, progress=None, cancel=None):
        self.requests.append(dict(photo=photo, threshold=threshold, kind="detect_damage"))
        if self.fail is not None:
            raise self.fail
        c = photo["channels"]
        gray = bytearray(photo["data"])[0::c] if photo["dtype"] == "uint8" else bytearray(photo["data"])[1::2 * c]
        mask = bytes(bytearray(255 if v >= 250 else 0 for v in gray))
        return {"mask": {"data": mask, "width": photo["width"], "height": photo["height"], "channels": 1,
                         "dtype": "uint8"}, "info": {"damaged_pixels": mask.count(b"\xff")}}

    def colorize(self, photo, hints, reference=None, damage=None, instances=None, options=None, progress=None,
                 cancel=None):
        self.requests.append(dict(photo=photo, hints=hints, reference=reference, damage=damage,
                                  instances=instances, options=options))
        if progress:
            progress(0.5, "Colorizing")
        if self.fail is not None:
            raise self.fail
        w, h, c = photo["width"], photo["height"], photo["channels"]
        bits = options["render"]
        if photo["dtype"] == "uint8":
            src = array("B", bytearray(photo["data"]))
        else:
            src = array("H")
            src.frombytes(photo["data"])
        gray = src[0::c]
        if bits == 8 and photo["dtype"] != "uint8":
            gray = array("B", [v >> 8 for v in gray])
        elif bits == 16 and photo["dtype"] == "uint8":
            gray = array("H", [v * 257 for v in gray])
        out = array("B" if bits == 8 else "H", [0]) * (w * h * 3)
        out[0::3] = gray
        out[1::3] = array(out.typecode, [v // 2 for v in gray])
        out[2::3] = array(out.typecode, [v // 4 for v in gray])
        info = {"device": self._device}
        if damage is not None:
            alpha = bytearray(damage["data"])[3::4]
            info["restored_pixels"] = len(alpha) - alpha.count(0)
        return {"rgb": {"data": out.tobytes(), "width": w, "height": h,
                        "dtype": "uint8" if bits == 8 else "uint16"}, "info": info}
