"""What each message must contain (docs/protocol.md), checked before any work is queued.

A colorize frame becomes a ColorizeRequest of numpy views on the frame's
payload; every refusal is a ProtocolError whose message names the field and
what was wrong with it, in the photo's own terms (layer numbers start at 1).
"""

import hmac

import numpy as np

PROTOCOL_VERSION = 1
REQUESTS = ("hello", "colorize", "suggest", "detect_damage", "cancel", "status", "shutdown")
PIXEL_REQUESTS = ("colorize", "suggest", "detect_damage")  # the requests that carry pixel buffers and queue for the worker
MAX_SUGGESTIONS = 32
PHOTO_DTYPES = ("uint8", "uint16", "float32")
MASK_DTYPES = ("uint8", "uint16", "float32")
MAX_INSTANCES = 64
MAX_HINT_LAYERS = 128
MIN_SIZE, MAX_SIZE = 16, 4096
METHODS = ("net", "levin")
DEVICES = {"auto": "auto", "cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}
INSTANCE_MODES = ("auto", "none", "selection")
AB_DTYPES = ("float16", "float32")
OPTIONS = ("size", "method", "device", "render", "ab", "instances")


class ProtocolError(Exception):
    """A refused message. fatal: the connection is closed after the error reply."""

    def __init__(self, code, message, fatal=True):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.fatal = fatal


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def request_id(header):
    """The header's request id if it is valid, else None."""
    return valid_id(header.get("id"))


def valid_id(rid):
    """rid when it is a valid request id (a whole number >= 0 or a 1-64 character string), else None."""
    if _is_int(rid) and rid >= 0 or isinstance(rid, str) and 0 < len(rid) <= 64:
        return rid
    return None


def check_envelope(header, token):
    """(type, id) of a request, after its token; ProtocolError otherwise."""
    sent = header.get("token")
    if not isinstance(sent, str) or not sent:
        raise ProtocolError("unauthorized", "refused: the request carries no token (it is in the engine's token file)")
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), token.encode("utf-8")):
        raise ProtocolError("unauthorized", "refused: wrong token (the engine was restarted or this is another "
                            "user's engine); read the token file again")
    kind = header.get("type")
    if kind not in REQUESTS:
        raise ProtocolError("unknown_message", "unknown message type %s; this engine understands %s"
                            % (_show(kind), ", ".join(REQUESTS)))
    rid = request_id(header)
    if rid is None:
        raise ProtocolError("bad_request", "%s needs an \"id\": a whole number >= 0 or a string of 1-64 characters"
                            % kind)
    return kind, rid


def check_hello(header):
    version = header.get("protocol")
    if not _is_int(version):
        raise ProtocolError("bad_request", "hello needs \"protocol\": the protocol version the client speaks")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("protocol_version", "the client speaks protocol %d but this engine speaks %d; "
                            "install the same Tinct version for GIMP and the engine" % (version, PROTOCOL_VERSION))


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def size_text(h, w):
    return "%dx%d" % (w, h)


class ColorizeRequest:
    """A checked colorize request; arrays are views on the frame's payload."""

    kind = "colorize"

    def __init__(self, rid, photo, hints, reference, damage, instances, options, notes):
        self.id = rid
        self.photo = photo
        self.hints = hints            # [(rgba, x, y, opacity)] bottom first
        self.reference = reference
        self.damage = damage          # None or (mask, x, y)
        self.instances = instances    # [(mask, x, y)]
        self.options = options
        self.notes = notes            # things the engine will not use, for the result's info

    @property
    def height(self):
        return self.photo.shape[0]

    @property
    def width(self):
        return self.photo.shape[1]


class _Buffers:
    """Hands out the frame's buffers by index; each may be used once, and all must be used."""

    def __init__(self, buffers):
        self.buffers = buffers
        self.used = set()

    def take(self, ref, what):
        if not isinstance(ref, dict):
            raise ProtocolError("bad_request", "%s must be an object like {\"buffer\": 0}, got %s" % (what, _show(ref)))
        index = ref.get("buffer")
        if not _is_int(index):
            raise ProtocolError("bad_request", "%s needs \"buffer\": the index of its pixel buffer" % what)
        if not 0 <= index < len(self.buffers):
            raise ProtocolError("bad_request", "%s refers to buffer %d but the frame has %d buffer%s"
                                % (what, index, len(self.buffers), "" if len(self.buffers) == 1 else "s"))
        if index in self.used:
            raise ProtocolError("bad_request", "%s refers to buffer %d, which another field already uses"
                                % (what, index))
        self.used.add(index)
        return self.buffers[index]

    def check_all_used(self):
        unused = sorted(set(range(len(self.buffers))) - self.used)
        if unused:
            raise ProtocolError("bad_request", "buffer %d is not used by any field of the request" % unused[0])


def _check_dtype(arr, what, allowed):
    if arr.dtype.name not in allowed:
        raise ProtocolError("bad_dtype", "%s is %s; it must be %s" % (what, arr.dtype.name, " or ".join(allowed)))


def _check_pixels(arr, what, max_pixels):
    h, w = arr.shape[:2]
    if h * w > max_pixels:
        raise ProtocolError("too_large", "%s is %s (%.1f MP), over the engine's limit of %.1f MP"
                            % (what, size_text(h, w), h * w / 1e6, max_pixels / 1e6))
    if h == 0 or w == 0:
        raise ProtocolError("bad_shape", "%s is empty (%s)" % (what, size_text(h, w)))


def _offset(ref, what, arr, photo_shape):
    """(x, y) of a layer on the photo; a layer without an offset must be exactly the photo's size."""
    has_x, has_y = "x" in ref, "y" in ref
    if has_x != has_y:
        raise ProtocolError("bad_request", "%s has %s but no %s; give both or neither" % (
            what, "x" if has_x else "y", "y" if has_x else "x"))
    H, W = photo_shape
    h, w = arr.shape[:2]
    if not has_x:
        if (h, w) != (H, W):
            raise ProtocolError("bad_shape", "%s is %s but the photo is %s and no offset was given"
                                % (what, size_text(h, w), size_text(H, W)))
        return 0, 0
    x, y = ref["x"], ref["y"]
    if not (_is_int(x) and _is_int(y)) or abs(x) > 1 << 30 or abs(y) > 1 << 30:
        raise ProtocolError("bad_request", "%s: x and y must be whole numbers of pixels, got %s, %s"
                            % (what, _show(x), _show(y)))
    return x, y


def _outside(x, y, h, w, H, W):
    return x >= W or y >= H or x + w <= 0 or y + h <= 0


def _photo(bufs, header, max_pixels):
    if "photo" not in header:
        raise ProtocolError("bad_request", "colorize needs a \"photo\"")
    photo = bufs.take(header["photo"], "photo")
    _check_dtype(photo, "the photo", PHOTO_DTYPES)
    if photo.ndim == 3 and photo.shape[2] == 1:
        photo = photo[..., 0]
    if not (photo.ndim == 2 or photo.ndim == 3 and photo.shape[2] in (3, 4)):
        raise ProtocolError("bad_shape", "the photo has shape %s; it must be gray (H, W) or (H, W, 1), or RGB "
                            "(H, W, 3)" % list(photo.shape))
    _check_pixels(photo, "the photo", max_pixels)
    return photo


def _hints(bufs, header, photo_shape, max_pixels, notes):
    layers = header.get("hints") or []
    if not isinstance(layers, list):
        raise ProtocolError("bad_request", "\"hints\" must be a list of hint layers")
    if len(layers) > MAX_HINT_LAYERS:
        raise ProtocolError("bad_request", "%d hint layers; at most %d" % (len(layers), MAX_HINT_LAYERS))
    out = []
    for i, ref in enumerate(layers, 1):
        what = "hint layer %d" % i
        arr = bufs.take(ref, what)
        _check_dtype(arr, what, PHOTO_DTYPES)
        if arr.ndim != 3 or arr.shape[2] != 4:
            raise ProtocolError("bad_shape", "%s has shape %s; hint layers are RGBA (H, W, 4)" % (what, list(arr.shape)))
        _check_pixels(arr, what, max_pixels)
        x, y = _offset(ref, what, arr, photo_shape)
        opacity = ref.get("opacity", 1.0)
        if not _is_number(opacity) or not 0.0 <= opacity <= 1.0:
            raise ProtocolError("bad_request", "%s: opacity must be a number from 0 to 1, got %s" % (what, _show(opacity)))
        if _outside(x, y, arr.shape[0], arr.shape[1], *photo_shape):
            notes.append("%s lies outside the photo" % what)
            continue
        out.append((arr, x, y, float(opacity)))
    return out


def _mask(bufs, ref, what, photo_shape, max_pixels, rgba_ok):
    arr = bufs.take(ref, what)
    _check_dtype(arr, what, MASK_DTYPES)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or rgba_ok and arr.ndim == 3 and arr.shape[2] == 4):
        raise ProtocolError("bad_shape", "%s has shape %s; it must be a one-channel mask (H, W)%s"
                            % (what, list(arr.shape), " or RGBA (H, W, 4)" if rgba_ok else ""))
    _check_pixels(arr, what, max_pixels)
    x, y = _offset(ref, what, arr, photo_shape)
    return arr, x, y


def _reference(bufs, header, max_pixels):
    ref = header.get("reference")
    if ref is None:
        return None
    arr = bufs.take(ref, "the reference")
    _check_dtype(arr, "the reference", PHOTO_DTYPES)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or arr.ndim == 3 and arr.shape[2] in (3, 4)):
        raise ProtocolError("bad_shape", "the reference has shape %s; it must be RGB (H, W, 3)" % list(arr.shape))
    _check_pixels(arr, "the reference", max_pixels)
    return arr


def check_options(options):
    """Options with defaults filled in; see docs/protocol.md for each key."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ProtocolError("bad_request", "\"options\" must be an object")
    unknown = sorted(k for k in options if k not in OPTIONS)
    if unknown:
        raise ProtocolError("bad_request", "unknown option %s; this engine knows %s" % (_show(unknown[0]), ", ".join(OPTIONS)))
    size = options.get("size", 256)
    if not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ProtocolError("bad_request", "option size must be a whole number of pixels from %d to %d, got %s"
                            % (MIN_SIZE, MAX_SIZE, _show(size)))
    method = options.get("method", "net")
    if method not in METHODS:
        raise ProtocolError("bad_request", "option method must be %s, got %s" % (" or ".join(METHODS), _show(method)))
    device = options.get("device", "auto")
    if not isinstance(device, str) or device not in DEVICES:
        raise ProtocolError("bad_request", "option device must be auto, cpu, cuda or gpu, got %s" % _show(device))
    render = options.get("render")
    if render not in (None, 0, 8, 16) or isinstance(render, bool):
        raise ProtocolError("bad_request", "option render must be 8 or 16 (bits of the RGB rendering) or 0 for "
                            "none, got %s" % _show(render))
    ab = options.get("ab")
    if ab not in (None, "none") + AB_DTYPES:
        raise ProtocolError("bad_request", "option ab must be float16, float32 or none, got %s" % _show(ab))
    render = render or None
    if ab is None:
        ab = None if render else "float16"
    elif ab == "none":
        ab = None
    if ab is None and render is None:
        raise ProtocolError("bad_request", "the request asks for no output: set render to 8 or 16, or ab to "
                            "float16 or float32")
    instances = options.get("instances")
    if instances not in (None,) + INSTANCE_MODES:
        raise ProtocolError("bad_request", "option instances must be auto, none or selection, got %s" % _show(instances))
    return {"size": size, "method": method, "device": DEVICES[device], "render": render, "ab": ab,
            "instances": instances}


def decode_colorize(frame, rid, max_pixels):
    """A ColorizeRequest from a colorize frame, or ProtocolError naming the first problem."""
    header = frame.header
    bufs = _Buffers(frame.buffers)
    notes = []
    options = check_options(header.get("options"))
    photo = _photo(bufs, header, max_pixels)
    shape = photo.shape[:2]
    hints = _hints(bufs, header, shape, max_pixels, notes)
    reference = _reference(bufs, header, max_pixels)
    damage = None
    if header.get("damage") is not None:
        damage = _mask(bufs, header["damage"], "the damage mask", shape, max_pixels, rgba_ok=True)
    instances = header.get("instances") or []
    if not isinstance(instances, list):
        raise ProtocolError("bad_request", "\"instances\" must be a list of masks")
    if len(instances) > MAX_INSTANCES:
        raise ProtocolError("bad_request", "%d instance masks; at most %d" % (len(instances), MAX_INSTANCES))
    masks = [_mask(bufs, ref, "instance mask %d" % i, shape, max_pixels, rgba_ok=False)
             for i, ref in enumerate(instances, 1)]
    if options["instances"] == "selection" and not masks:
        raise ProtocolError("bad_request", "option instances is \"selection\" but the request has no instance masks")
    bufs.check_all_used()
    return ColorizeRequest(rid, photo, hints, reference, damage, masks, options, notes)


class SuggestRequest(ColorizeRequest):
    """A checked suggest request: the likeliest colors at one pixel of the photo (engine/suggest.py)."""

    kind = "suggest"

    def __init__(self, rid, photo, hints, reference, options, notes, at, count):
        ColorizeRequest.__init__(self, rid, photo, hints, reference, None, [], options, notes)
        self.at = at
        self.count = count


def decode_suggest(frame, rid, max_pixels):
    """A SuggestRequest from a suggest frame: photo, hints and reference as for colorize, plus
    "at": [x, y] and "count"; options size and device only."""
    header = frame.header
    bufs = _Buffers(frame.buffers)
    notes = []
    options = header.get("options") or {}
    if not isinstance(options, dict) or set(options) - {"size", "device"}:
        raise ProtocolError("bad_request", "suggest takes the options size and device only")
    options = check_options(dict(options, ab="float16"))
    photo = _photo(bufs, header, max_pixels)
    hints = _hints(bufs, header, photo.shape[:2], max_pixels, notes)
    reference = _reference(bufs, header, max_pixels)
    bufs.check_all_used()
    at = header.get("at")
    if not (isinstance(at, list) and len(at) == 2 and all(_is_int(v) for v in at)):
        raise ProtocolError("bad_request", "suggest needs \"at\": [x, y], a pixel of the photo, got %s" % _show(at))
    if not (0 <= at[0] < photo.shape[1] and 0 <= at[1] < photo.shape[0]):
        raise ProtocolError("bad_request", "\"at\" %d, %d lies outside the %s photo"
                            % (at[0], at[1], size_text(*photo.shape[:2])))
    count = header.get("count", 8)
    if not _is_int(count) or not 1 <= count <= MAX_SUGGESTIONS:
        raise ProtocolError("bad_request", "\"count\" must be a whole number from 1 to %d, got %s"
                            % (MAX_SUGGESTIONS, _show(count)))
    return SuggestRequest(rid, photo, hints, reference, options, notes, (at[0], at[1]), count)


class DetectDamageRequest(ColorizeRequest):
    """A checked detect_damage request: the damage mask of a photo (engine/detect_damage.py)."""

    kind = "detect_damage"

    def __init__(self, rid, photo, options, threshold):
        ColorizeRequest.__init__(self, rid, photo, [], None, None, [], options, [])
        self.threshold = threshold


def decode_detect_damage(frame, rid, max_pixels):
    """A DetectDamageRequest from a detect_damage frame: the photo as for colorize, an optional
    "threshold" (0 < t < 1; absent: the model's) and the option device only."""
    header = frame.header
    bufs = _Buffers(frame.buffers)
    options = header.get("options") or {}
    if not isinstance(options, dict) or set(options) - {"device"}:
        raise ProtocolError("bad_request", "detect_damage takes the option device only")
    options = check_options(dict(options, ab="float16"))
    photo = _photo(bufs, header, max_pixels)
    bufs.check_all_used()
    threshold = header.get("threshold")
    if threshold is not None and not (_is_number(threshold) and 0 < threshold < 1):
        raise ProtocolError("bad_request", "\"threshold\" must be a number between 0 and 1, got %s" % _show(threshold))
    return DetectDamageRequest(rid, photo, options, threshold)


def check_request(frame, token, greeted, max_pixels):
    """(type, id, ColorizeRequest or None) for a client's frame, everything checked; ProtocolError otherwise.

    greeted: whether this connection's hello already succeeded (it must come first)."""
    kind, rid = check_envelope(frame.header, token)
    if frame.buffers and kind not in PIXEL_REQUESTS:
        raise ProtocolError("bad_request", "%s carries no pixel buffers, but this one has %d" % (kind, len(frame.buffers)))
    if not greeted and kind != "hello":
        raise ProtocolError("bad_request", "the first message on a connection must be hello, not %s" % kind)
    if kind == "hello":
        check_hello(frame.header)
    if kind == "cancel" and valid_id(frame.header.get("target")) is None:
        raise ProtocolError("bad_request", "cancel needs \"target\": the id of the request to cancel")
    request = None
    if kind == "colorize":
        request = decode_colorize(frame, rid, max_pixels)
    elif kind == "suggest":
        request = decode_suggest(frame, rid, max_pixels)
    elif kind == "detect_damage":
        request = decode_detect_damage(frame, rid, max_pixels)
    return kind, rid, request


def place_mask(mask, x, y, height, width):
    """A (height, width) bool mask from a layer's painted pixels placed at (x, y) (alpha for RGBA)."""
    src = mask[..., 3] if mask.ndim == 3 else mask
    out = np.zeros((height, width), bool)
    h, w = src.shape
    y0, y1, x0, x1 = max(0, y), min(height, y + h), max(0, x), min(width, x + w)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = src[y0 - y:y1 - y, x0 - x:x1 - x] > 0
    return out


def error_header(rid, code, message, fatal):
    return {"type": "error", "id": rid, "code": code, "message": message, "fatal": bool(fatal)}
