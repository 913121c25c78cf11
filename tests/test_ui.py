"""The colorization window (`tinct ui`), end to end: `tinct ui --serve` with a real engine it
starts on a real socket, and Debian's Chromium driven by Playwright.

Placing a point changes the preview's pixels; suggestions come and one click uses one; undo
brings the preview back to the very pixels it had; Save writes a result that
`tinct colorize --hints` reproduces from the saved hints PNG. The page server refuses requests
without its key. An engine killed while the page is open: the page says so, the engine comes
back, the points are all still there. A missing or unreadable photo exits 2 with one line.
Also writes docs/ui.png, the README's screenshot.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from engine.imageio import load_image

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = os.path.join(ROOT, "docs", "ui.png")
WAIT_MS = 60000


def tinct(*args, env, **kw):
    return subprocess.run([sys.executable, "-m", "engine"] + list(args), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def ui():
    """`tinct ui --serve` on a 640x480 photo (bigger than the 256 working size), with its own
    runtime and config folders, so the engine it starts is this test's alone."""
    from PIL import Image

    folder = tempfile.mkdtemp(prefix="tui-")
    runtime = os.path.join(folder, "run")
    os.makedirs(runtime, mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINCT_", "XDG_"))}
    env.update(XDG_RUNTIME_DIR=runtime, XDG_CONFIG_HOME=os.path.join(folder, "config"), PYTHONUNBUFFERED="1")
    photo = os.path.join(folder, "wall.png")
    Image.open(os.path.join(ROOT, "examples", "great_wall_bw.png")).resize((640, 480), Image.BICUBIC).save(photo)
    proc, url = start_ui(env, photo)
    try:
        yield {"url": url, "env": env, "photo": photo, "folder": folder, "proc": proc}
    finally:
        end(proc)
        tinct("stop", env=env)
        shutil.rmtree(folder, ignore_errors=True)


def terminal_ctrl_c():
    """In the child: Ctrl+C as in a terminal (a background job, like CI's, inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_ui(env, photo, *options):
    """`tinct ui --serve PHOTO [options]`: (process, the address it printed)."""
    proc = subprocess.Popen([sys.executable, "-m", "engine", "ui", "--serve", photo] + list(options), env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=terminal_ctrl_c)
    line = proc.stdout.readline()
    if "http://" not in line:
        end(proc)
        pytest.fail("tinct ui printed no address: %r %s" % (line, proc.stderr.read()))
    return proc, line[line.index("http://"):].split()[0]


def end(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("Chromium is not installed (tests/run installs Debian's chromium as root)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(ui, browser):
    # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses to poll
    page = browser.new_page(viewport={"width": 1200, "height": 760}, bypass_csp=True)
    page.goto(ui["url"])
    wait_preview(page, 0)
    yield page
    page.close()


def generation(page):
    return int(page.get_attribute("#stage", "data-preview"))  # 0 until the first preview


def wait_preview(page, after):
    """Wait for a preview newer than generation `after` with no edit left to send; its pixels."""
    page.wait_for_function("(g) => Number(document.getElementById('stage').dataset.preview) > g && !dirty && "
                           "!inFlight", arg=after, timeout=WAIT_MS)
    return preview(page)


def preview(page):
    data = page.evaluate("""() => { const c = document.getElementById('preview');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    h, w = page.evaluate("[info.preview_height, info.preview_width]")
    return np.array(data, np.uint8).reshape(h, w, 4)[..., :3]


def click_photo(page, x, y, **kw):
    at = page.evaluate("([x, y]) => toScreen(x + 0.5, y + 0.5)", [x, y])
    box = page.locator("#view").bounding_box()
    page.mouse.click(box["x"] + at["x"], box["y"] + at["y"], **kw)


def points(page):
    return page.evaluate("edit.points")


# ---- the page server's guard ----

def test_the_page_answers_only_with_its_key_on_loopback(ui):
    base = ui["url"].split("/")[2]
    host, port = base.split(":")
    key = ui["url"].split("/")[3]
    assert host == "127.0.0.1"

    def get(path, headers=None):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    assert get("/") == 403
    assert get("/index.html") == 403
    assert get("/api/state") == 403
    assert get("/guess/api/state") == 403
    assert get("/%s/api/state" % key, {"Host": "evil.example"}) == 403
    assert get("/%s/api/state" % key) == 200
    assert get("/%s/app.js" % key) == 200
    assert get("/%s/../session.py" % key) in (403, 404)


# ---- the edit loop ----

def test_point_suggestion_undo_and_save(ui, page, tmp_path):
    gray = wait_preview(page, 0)   # the automatic colors, before any point

    page.fill("#color", "#d02020")                        # the picker's color goes to new points
    g = generation(page)
    click_photo(page, 320, 300)
    red = wait_preview(page, g)
    assert points(page) == [{"x": 320, "y": 300, "rgb": [208, 32, 32]}]
    changed = np.abs(red.astype(int) - gray.astype(int)).max(-1) > 8
    assert changed.mean() > 0.02, "a red point changed only %.3f of the preview" % changed.mean()
    py, px = 300 * red.shape[0] // 480, 320 * red.shape[1] // 640
    r, gr, b = red[py, px].astype(int)
    assert r > gr + 20 and r > b + 20, "the preview is not red at the point: %s" % red[py, px]

    page.wait_for_selector("#suggestions .swatch", timeout=WAIT_MS)
    swatches = page.locator("#suggestions .swatch")
    assert swatches.count() == 8
    titles = [swatches.nth(i).get_attribute("title") for i in range(8)]
    def greenness(title):   # the trees' color (for the screenshot): any suggestion but the point's own would do
        r, g, b = [int(title[k:k + 2], 16) for k in (1, 3, 5)]
        return g - max(r, b)

    others = [i for i, t in enumerate(titles) if not t.startswith("#d02020")]
    pick = next((i for i in others if greenness(titles[i]) > 0), others[0])   # the likeliest green
    wanted = titles[pick].split(",")[0]
    g = generation(page)
    swatches.nth(pick).click()
    suggested = wait_preview(page, g)
    assert "#%02x%02x%02x" % tuple(points(page)[0]["rgb"]) == wanted
    assert not np.array_equal(suggested, red)
    page.screenshot(path=SCREENSHOT)

    g = generation(page)
    page.locator("#view").focus()
    page.keyboard.press("Control+z")
    assert np.array_equal(wait_preview(page, g), red)
    g = generation(page)
    page.keyboard.press("Control+z")
    assert points(page) == []
    assert np.array_equal(wait_preview(page, g), gray), "undo did not bring the preview back"
    g = generation(page)
    page.click("#redo")
    page.click("#redo")
    assert np.array_equal(wait_preview(page, g), suggested)

    page.click("#save")
    page.wait_for_function("document.body.dataset.saved", timeout=WAIT_MS)
    stem = os.path.splitext(ui["photo"])[0]
    saved, hints = load_image(stem + "_color.png"), load_image(stem + "_hints.png")
    assert saved.shape == (480, 640, 3) and hints.shape == (480, 640, 4)
    assert np.count_nonzero(hints[..., 3]) == 1
    again = str(tmp_path / "again.png")
    run = tinct("colorize", ui["photo"], "--hints", stem + "_hints.png", "-o", again, env=ui["env"])
    assert run.returncode == 0, run.stderr
    assert np.abs(load_image(again).astype(int) - saved.astype(int)).max() <= 1
    plain = str(tmp_path / "plain.png")
    assert tinct("colorize", ui["photo"], "-o", plain, env=ui["env"]).returncode == 0
    assert np.abs(load_image(plain).astype(int) - saved.astype(int)).max() > 8, "the saved point changed nothing"


def test_a_dead_engine_is_said_and_restarted_and_the_points_stay(ui, page):
    start = points(page)   # a new page opens with the points last sent (here, the earlier test's)
    page.fill("#color", "#2040d0")
    for x, y in ((200, 150), (450, 320)):
        g = generation(page)
        click_photo(page, x, y)
        before = wait_preview(page, g)
    kept = points(page)
    assert len(kept) == len(start) + 2
    pid = page.evaluate("fetch('api/health').then(r => r.json()).then(h => h.pid)")
    os.kill(pid, signal.SIGKILL)
    page.wait_for_selector("#engine-banner:not([hidden])", timeout=WAIT_MS)
    assert "engine stopped" in page.inner_text("#engine-banner")
    g = generation(page)
    page.fill("#color", "#2040d0")  # an edit while it is down waits for the new engine
    page.wait_for_selector("#engine-banner", state="hidden", timeout=120000)
    after = wait_preview(page, g)
    assert points(page) == kept
    assert np.array_equal(after, before), "the new engine's preview of the same points differs"
    assert page.evaluate("fetch('api/health').then(r => r.json()).then(h => h.pid)") != pid


def test_drag_delete_reference_saturation_and_before(ui, page, tmp_path):
    from PIL import Image

    page.evaluate("edit.points = []; selected = -1; edited()")   # (a new page opens with the points last sent)
    base = wait_preview(page, 0)
    page.fill("#color", "#e0a020")
    g = generation(page)
    click_photo(page, 150, 150)
    placed = wait_preview(page, g)

    start = page.evaluate("toScreen(150.5, 150.5)")
    end = page.evaluate("toScreen(450.5, 100.5)")
    box = page.locator("#view").bounding_box()
    g = generation(page)
    page.mouse.move(box["x"] + start["x"], box["y"] + start["y"])
    page.mouse.down()
    page.mouse.move(box["x"] + end["x"], box["y"] + end["y"], steps=8)
    page.mouse.up()
    dragged = wait_preview(page, g)
    assert [(p["x"], p["y"]) for p in points(page)] == [(450, 100)]
    assert not np.array_equal(dragged, placed)

    g = generation(page)
    page.keyboard.press("Delete")
    assert points(page) == []
    assert np.array_equal(wait_preview(page, g), base), "deleting the only point did not bring the preview back"

    blue = str(tmp_path / "blue.png")
    Image.new("RGB", (64, 48), (20, 60, 230)).save(blue)
    g = generation(page)
    page.set_input_files("#reference-file", blue)
    referenced = wait_preview(page, g)
    assert page.evaluate("edit.reference") > 0 and page.is_visible("#reference-thumb")
    assert not np.array_equal(referenced, base), "the reference changed nothing"

    g = generation(page)
    page.fill("#saturation", "0")
    gray = wait_preview(page, g).astype(int)
    assert np.abs(gray - gray[..., :1]).max() <= 2, "saturation 0 left color in the preview"

    page.click("#before")
    assert page.get_attribute("#before", "aria-pressed") == "true"
    page.click("#before")
    g = generation(page)
    page.click("#undo")   # the saturation
    page.click("#undo")   # the reference
    assert np.array_equal(wait_preview(page, g), base)


def test_a_reference_dropped_on_the_window(ui, page):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (230, 40, 30)).save(buf, "PNG")
    before_drop = wait_preview(page, 0)
    g = generation(page)
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "red.png", {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }""", base64.b64encode(buf.getvalue()).decode())
    dropped = wait_preview(page, g)
    assert page.evaluate("edit.reference") > 0 and page.is_visible("#reference-thumb")
    assert not np.array_equal(dropped, before_drop), "the dropped reference changed nothing"


# ---- opened by GIMP's Interactive...: Apply and Cancel ----

def test_apply_hands_the_points_back_and_cancel_writes_nothing(ui, browser, tmp_path):
    for button in ("apply", "cancel"):
        result = tmp_path / (button + ".json")
        proc, url = start_ui(ui["env"], ui["photo"], "--apply-to", str(result))
        page = browser.new_page(bypass_csp=True)
        try:
            page.goto(url)
            wait_preview(page, 0)
            assert page.is_visible("#apply") and page.is_visible("#cancel") and not page.is_visible("#save")
            page.fill("#color", "#10a040")
            g = generation(page)
            click_photo(page, 100, 90)
            wait_preview(page, g)
            page.click("#" + button)
            assert proc.wait(timeout=30) == 0, "the window did not close on %s" % button
        finally:
            page.close()
            end(proc)
        if button == "apply":
            assert json.loads(result.read_text())["points"] == [{"x": 100, "y": 90, "rgb": [16, 160, 64]}]
        else:
            assert not result.exists()


def test_apply_points_applies_without_a_window(ui, tmp_path):
    points, result = tmp_path / "points.json", tmp_path / "result.json"
    points.write_text('[{"x": 5, "y": 6, "rgb": [1, 2, 3]}]')
    run = tinct("ui", ui["photo"], "--apply-to", str(result), "--apply-points", str(points), env=ui["env"])
    assert run.returncode == 0, run.stderr
    assert json.loads(result.read_text())["points"] == [{"x": 5, "y": 6, "rgb": [1, 2, 3]}]
    points.write_text('[{"x": 5000, "y": 6, "rgb": [1, 2, 3]}]')
    outside = tinct("ui", ui["photo"], "--apply-to", str(result), "--apply-points", str(points), env=ui["env"])
    assert outside.returncode == 2 and "outside" in outside.stderr


# ---- bad input ----

def test_a_missing_or_unreadable_photo_exits_2_with_one_line(tmp_path):
    env = dict(os.environ)
    missing = tinct("ui", "--serve", str(tmp_path / "nope.png"), env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "nope.png" in missing.stderr
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    unreadable = tinct("ui", "--serve", str(bad), env=env)
    assert unreadable.returncode == 2
    assert unreadable.stderr.strip().count("\n") == 0 and "notes.png" in unreadable.stderr
