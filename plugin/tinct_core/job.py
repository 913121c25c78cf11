# -*- coding: utf-8 -*-
"""One Colorize run, host independent: read the document, ask the engine, place the result.

The GIMP adapters implement `Host` (a thin layer over the GIMP API) and call
`colorize(host, settings, engine)`. Everything that reads the document happens
first; the document is changed only after the engine has answered, inside one
undo group, and any failure while changing it is rolled back, so a failure or a
cancel leaves the document exactly as it was.
Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import, division

import contextlib

from . import roles
from .errors import TinctCancelled, TinctUserError
from .pixels import add_alpha, alpha_is_empty, convert_channels, mask_is_empty, placed_alpha, split_alpha

# The most pixels Tinct sends when the engine does not say otherwise (100 MP).
DEFAULT_MAX_PIXELS = 100 * 1000 * 1000


class Host(object):
    """What the core needs from GIMP. The adapters (GIMP 3, GIMP 2.10) implement it.

    Layers are described as roles.LayerInfo (top of the stack first); pixels as
    pixels.Pixels. All methods may raise; the core turns that into a message.
    """

    # --- reading the document -------------------------------------------------
    def image_id(self):
        raise NotImplementedError

    def base_type(self):
        """"RGB", "GRAY" or "INDEXED"."""
        raise NotImplementedError

    def precision_bits(self):
        """8 for 8-bit images, 16 for anything deeper (16/32-bit, float)."""
        raise NotImplementedError

    def layers(self):
        """Every layer, top first, groups flattened (visible includes parents)."""
        raise NotImplementedError

    def selected(self):
        """The selected layers (GIMP 3 may select several), as LayerInfo."""
        raise NotImplementedError

    def read_pixels(self, layer, channels, bits):
        """The layer's pixels (its own size) as Pixels with 1 (Y), 2 (YA), 3 (RGB) or 4 (RGBA) channels."""
        raise NotImplementedError

    def selection_mask(self, photo):
        """The selection over the photo's area as 8-bit 1-channel Pixels, or None when nothing is selected."""
        raise NotImplementedError

    def instance_channels(self, photo):
        """[(name, Pixels)] of channels named `Tinct instance …`, over the photo's area."""
        return []

    def load_image_file(self, path):
        """An image file as 8-bit RGB Pixels (used for a reference chosen as a file)."""
        raise NotImplementedError

    # --- changing the document (only after the engine answered) ---------------
    def undo_group_start(self):
        raise NotImplementedError

    def undo_group_end(self):
        raise NotImplementedError

    def convert_to_rgb(self):
        raise NotImplementedError

    def convert_to_gray(self):
        raise NotImplementedError

    def convert_to_indexed(self):
        """Undo convert_to_rgb() of an indexed image after a failure (best effort)."""
        raise NotImplementedError

    def new_result_layer(self, photo, name, opacity, visible=True, mode="color"):
        """Insert a new RGBA layer directly above `photo` (same parent), with the photo's size and
        offsets, in LCh Color mode (mode "color") or Normal mode ("normal"). Returns its LayerInfo."""
        raise NotImplementedError

    def write_pixels(self, layer, pixels):
        """Fill a layer new_result_layer() just made (no pixel undo needed). `pixels` has its size."""
        raise NotImplementedError

    def remove_layer(self, layer):
        raise NotImplementedError

    def rename_layer(self, layer, name):
        raise NotImplementedError

    def flush(self):
        pass

    # --- talking to the user ---------------------------------------------------
    def progress(self, fraction, text=None):
        pass

    def message(self, text):
        pass


class ColorizeOutcome(object):
    """What a run did: the result layer, notices shown, the engine's info."""

    def __init__(self, result_layer, notices, info, created):
        self.result_layer = result_layer
        self.notices = notices
        self.info = info
        self.created = created


class Plan(object):
    """Everything read from the document for one run (nothing changed yet)."""

    def __init__(self):
        self.photo = None
        self.photo_pixels = None
        self.photo_alpha = None
        self.bits = 8
        self.gray = False
        self.convert_from = None  # "GRAY" or "INDEXED": converted to RGB inside the undo group
        self.hints = []          # [(Pixels RGBA 8-bit, dx, dy, opacity 0..1)] bottom first
        self.hint_names = []
        self.reference = None    # Pixels RGB 8-bit
        self.damage = None       # (Pixels RGBA 8-bit, dx, dy)
        self.instances = []      # [Pixels 1-channel 8-bit] over the photo area
        self.notices = []


class IndexedImage(TinctUserError):
    """An indexed-color image: the adapter may offer to convert it (then run again with convert_indexed)."""

    def __init__(self):
        TinctUserError.__init__(
            self, "Tinct works on RGB and grayscale images, and this image uses indexed colors. "
                  "Convert it with Image > Mode > RGB and run Tinct again.")


@contextlib.contextmanager
def undo_group(host, created):
    """One undo group around a change that makes layers: when the block fails, the layers it
    listed in `created` (LayerInfo) are removed again before the group closes, and the error goes on."""
    host.undo_group_start()
    try:
        yield
    except Exception:
        try:
            for layer in reversed(created):
                host.remove_layer(layer)
        finally:
            host.undo_group_end()
        raise
    host.undo_group_end()


def new_layer_place(host):
    """Where Add Hint Layer / Add Damage Mask put their layer: (photo, the layer to stack it directly
    above, which is the photo's Tinct color layer when it has one). Refuses indexed images; changes nothing."""
    if host.base_type() == "INDEXED":
        raise IndexedImage()
    layers = host.layers()
    photo = roles.find_photo(layers, host.selected())
    return photo, roles.result_layer(layers, photo) or photo


def engine_progress(host):
    """The progress(fraction, text) callback for an engine request (Colorize, Detect Damage): the
    engine's fraction (clamped; 0 when it is not a number) fills 5 % to 90 % of the host's bar, the
    rest being reading the document before and changing it after."""
    def progress(fraction, text=None):
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = 0.0
        host.progress(0.05 + 0.85 * max(0.0, min(1.0, fraction)), text and "Tinct: %s" % text)

    return progress


def plan_colorize(host, settings, hint_layers=None, reference_layer=None, max_pixels=None, convert_indexed=False):
    """Read the document and validate: returns a Plan or raises TinctUserError. Changes nothing.

    max_pixels: the engine's limit, or a callable that asks the engine for it (called only once the
    cheap checks passed, so a bad document is refused without starting the engine).
    convert_indexed: the user agreed to convert an indexed image to RGB (inside the run's undo group)."""
    settings.validate()
    plan = Plan()
    base = host.base_type()
    if base == "INDEXED" and not convert_indexed:
        raise IndexedImage()
    plan.gray = base == "GRAY"
    plan.convert_from = base if base in ("GRAY", "INDEXED") else None
    layers = host.layers()
    photo = roles.find_photo(layers, host.selected())
    plan.photo = photo
    if photo.width <= 0 or photo.height <= 0:
        raise TinctUserError("The photo layer '%s' is empty." % photo.name)
    image_id = host.image_id()
    plan.bits = 16 if host.precision_bits() > 8 else 8

    # Hints: the given layers, or every visible `Tinct hints…` layer (checked before asking the engine).
    if hint_layers is None:
        hint_layers = roles.hint_layers(layers, photo)
    for info in hint_layers:
        if info.image_id is not None and image_id is not None and info.image_id != image_id:
            raise TinctUserError("The hint layer '%s' belongs to another image. Hint layers must be in the "
                                 "same image as the photo." % info.name)

    if callable(max_pixels):
        host.progress(0.0, "Tinct: connecting to the engine")
        max_pixels = max_pixels()
    limit = max_pixels or DEFAULT_MAX_PIXELS
    if photo.width * photo.height > limit:
        raise TinctUserError(
            "The photo '%s' is %dx%d (%.1f megapixels), more than the engine's limit of %.1f megapixels. "
            "Scale the image down (Image > Scale Image) or colorize a crop."
            % (photo.name, photo.width, photo.height, photo.width * photo.height / 1e6, limit / 1e6))

    host.progress(0.0, "Tinct: reading the photo")
    channels = 1 if plan.gray else 3
    if photo.has_alpha:
        channels += 1
    pix = host.read_pixels(photo, channels, plan.bits)
    plan.photo_pixels, plan.photo_alpha = split_alpha(pix)

    painted = 0
    for info in hint_layers:
        if not roles.overlaps(info, photo):
            continue
        rgba = host.read_pixels(info, 4, 8)
        if alpha_is_empty(rgba):
            continue
        dx, dy = roles.relative_offset(info, photo)
        plan.hints.append((rgba, dx, dy, max(0.0, min(1.0, info.opacity / 100.0))))
        plan.hint_names.append(info.name)
        painted += 1
    if hint_layers and not painted:
        plan.notices.append("Tinct: the hint layer%s %s %s empty, so the photo was colorized automatically."
                            % ("s" if len(hint_layers) > 1 else "",
                               ", ".join("'%s'" % h.name for h in hint_layers),
                               "are" if len(hint_layers) > 1 else "is"))

    # Reference: a layer or a file.
    if settings.reference == "layer":
        ref = reference_layer or roles.reference_layer(layers)
        if ref is None:
            raise TinctUserError("Reference is set to 'layer' but the image has no layer named '%s'. "
                                 "Add one (or choose a file) and run Tinct again." % roles.REFERENCE_NAME)
        if ref.image_id is not None and image_id is not None and ref.image_id != image_id:
            raise TinctUserError("The reference layer '%s' belongs to another image." % ref.name)
        plan.reference = host.read_pixels(ref, 3, 8)
    elif settings.reference == "file":
        plan.reference = host.load_image_file(settings.reference_file)

    damage = roles.damage_layer(layers)
    if damage is not None and roles.overlaps(damage, photo):
        rgba = host.read_pixels(damage, 4, 8)
        if not alpha_is_empty(rgba):
            dx, dy = roles.relative_offset(damage, photo)
            plan.damage = (rgba, dx, dy)

    if settings.instances == "selection":
        masks = []
        sel = host.selection_mask(photo)
        if sel is not None and not mask_is_empty(sel):
            masks.append(sel)
        for _name, mask in host.instance_channels(photo):
            if not mask_is_empty(mask):
                masks.append(mask)
        if not masks:
            raise TinctUserError("Instances are set to 'from selection' but nothing is selected and there is no "
                                 "channel named '%s …'. Select the object(s) or choose 'auto'."
                                 % roles.INSTANCE_PREFIX)
        plan.instances = masks
    return plan


def apply_result(host, plan, rgb, settings, restored=False):
    """Place the engine's RGB rendering as the `Tinct color` layer: one undo group, rolled back on failure.

    rgb: Pixels (3 channels, plan.bits) of the photo's size.
    restored: the engine restored the painted damage (its rendering's lightness is restored there):
    the rendering's damaged pixels also go into a `Tinct restored` layer in Normal mode between the
    photo and the color layer, so the fill shows while the photo layer itself stays untouched.
    """
    photo = plan.photo
    if (rgb.width, rgb.height) != (photo.width, photo.height):
        raise TinctUserError("The engine returned a %dx%d result for a %dx%d photo."
                             % (rgb.width, rgb.height, photo.width, photo.height))
    if rgb.channels != 3:
        raise TinctUserError("The engine returned %d channels instead of RGB." % rgb.channels)
    layers = [(roles.RESULT_NAME, "color", settings.opacity,
               # the result layer is RGBA: the photo's own alpha, or opaque
               add_alpha(rgb, plan.photo_alpha) if plan.photo_alpha is not None else convert_channels(rgb, 4))]
    if restored and plan.damage is not None:
        rgba, dx, dy = plan.damage
        layers.append((roles.RESTORED_NAME, "normal", 100.0,
                       add_alpha(rgb, placed_alpha(rgba, dx, dy, photo.width, photo.height, rgb.bits))))

    converted = False
    made = []  # (new layer, the old one it replaces or None)
    host.undo_group_start()
    try:
        if plan.convert_from:
            host.convert_to_rgb()
            converted = True
        # Always fresh layers: writing into a new layer needs no pixel undo, and removing the old one
        # is undoable, so one undo brings the previous result back. A re-run keeps the user's
        # opacity and visibility. Each new layer goes directly above the photo, so the restored
        # one (made second) sits under the color layer.
        for name, mode, opacity, pixels in layers:
            existing = roles.result_layer(host.layers(), photo, name)
            if existing is not None:
                created = host.new_result_layer(photo, name, existing.opacity, existing.visible, mode)
            else:
                created = host.new_result_layer(photo, name, opacity, True, mode)
            made.append((created, existing))
            host.write_pixels(created, pixels)
    except Exception:
        try:
            for created, _ in made:
                host.remove_layer(created)
            if converted and plan.convert_from == "GRAY":
                host.convert_to_gray()
            elif converted:
                host.convert_to_indexed()
        finally:
            host.undo_group_end()
        raise
    try:  # (removing and renaming do not fail once the new layers are written)
        for (created, existing), (name, _, _, _) in zip(made, layers):
            if existing is not None:
                host.remove_layer(existing)
                host.rename_layer(created, name)  # GIMP named it "... #1" while both existed
    finally:
        host.undo_group_end()
    host.flush()
    target, existing = made[0]
    return target, existing is None


def colorize(host, settings, engine, hint_layers=None, reference_layer=None, cancel=None, convert_indexed=False):
    """The whole run. engine: an object with colorize(plan, settings, progress, cancel) -> (Pixels RGB, info)
    and max_pixels() (engine.EngineBridge). Returns a ColorizeOutcome; raises TinctUserError with a plain
    message, and then the document is as it was."""
    plan = plan_colorize(host, settings, hint_layers, reference_layer, engine.max_pixels, convert_indexed)
    host.progress(0.05, "Tinct: colorizing")
    rgb, info = engine.colorize(plan, settings, engine_progress(host), cancel)
    if cancel is not None and cancel():
        raise TinctCancelled()
    host.progress(0.92, "Tinct: placing the result")
    restored = isinstance(info, dict) and bool(info.get("restored_pixels"))
    layer, created = apply_result(host, plan, rgb, settings, restored)
    host.progress(1.0, "Tinct: done")
    ignored = info.get("ignored") if isinstance(info, dict) else None
    if ignored:
        plan.notices.append("Tinct: the engine did not use: %s." % "; ".join(str(i) for i in ignored))
    for note in plan.notices:
        host.message(note)
    return ColorizeOutcome(layer, plan.notices, info, created)
