"""The installer page (`tinct-install --gui`) without pywebview: `--serve-gui` serves the same
page and API on 127.0.0.1, and headless Chromium (Debian `chromium`) drives it over the DevTools
protocol: the GIMPs found with checkboxes, the device, Install/Uninstall with progress, and the
result per profile, checked against the files on disk. Also: the API refuses callers without
the page's key, and `--gui` without a display falls back to the command line."""

import http.client
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from installer import actions
from installer.gui_api import GuiApi
from installer.gui_server import GuiServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_home(tmp_path, *profiles):
    home = str(tmp_path / "home")
    for rel in profiles:
        os.makedirs(os.path.join(home, rel))
    return home


def clean_env(home, runtime):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TINCT_", "GIMP2_", "GIMP3_", "XDG_", "DISPLAY", "WAYLAND"))}
    env.update(HOME=home, XDG_RUNTIME_DIR=runtime)
    return env


@pytest.fixture
def runtime():
    folder = tempfile.mkdtemp(prefix="trt-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- the local server's guard ------------------------------------------------------------

def test_the_api_answers_only_the_page_that_knows_the_key(tmp_path, runtime):
    home = fake_home(tmp_path, ".config/GIMP/3.0")
    api = GuiApi(actions.Options(env=clean_env(home, runtime), home=home, start_engine=False))
    server = GuiServer(api).start()
    try:
        def post(path, headers, body=b'{"args": []}'):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")

        assert post("/api/state", {})[0] == 403
        assert post("/api/state", {"X-Tinct-Key": "guess"})[0] == 403
        assert post("/api/state", {"X-Tinct-Key": server.key, "Host": "evil.example:80"})[0] == 403
        assert post("/api/__init__", {"X-Tinct-Key": server.key})[0] == 404
        assert post("/api/state", {"X-Tinct-Key": server.key}, b"not json")[0] == 400
        status, state = post("/api/state", {"X-Tinct-Key": server.key})
        assert status == 200
        assert [p["version"] for p in state["profiles"]] == ["3.0"]
        status, reply = post("/api/start", {"X-Tinct-Key": server.key}, b'{"args": ["install", ["/etc"]]}')
        assert reply == {"error": "Tick at least one GIMP first."}  # only profiles it found can be chosen
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/../cli.py")
        assert conn.getresponse().status == 404
        assert server.httpd.server_address[0] == "127.0.0.1"
    finally:
        server.stop()


# --- no display ---------------------------------------------------------------------------

def test_gui_without_a_display_runs_the_command_line_and_says_so(tmp_path, runtime):
    home = fake_home(tmp_path, ".config/GIMP/3.0")
    proc = subprocess.run([sys.executable, "-m", "installer", "--gui", "--no-start"], cwd=ROOT,
                          env=clean_env(home, runtime), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no display found" in proc.stderr and "running the command-line installer instead" in proc.stderr
    assert "installed Tinct" in proc.stdout
    assert os.path.isfile(os.path.join(home, ".config/GIMP/3.0/plug-ins/tinct/tinct.py"))


# --- the page in headless Chromium ---------------------------------------------------------

class DevTools(object):
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out): no websocket
    library needed. One page, one flattened session."""

    def __init__(self, profile_dir):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--remote-debugging-pipe", "--user-data-dir=" + profile_dir, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.session = None

    def call(self, method, params=None, timeout=30):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError("%s: %s" % (method, reply["error"]))
                    return reply["result"]
            left = deadline - time.time()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer %s" % method)
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk

    def open(self, url):
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.wait_for("location.href.startsWith('http') && document.readyState === 'complete'")

    def js(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError("page error: %s" % result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.js(expression)
            except RuntimeError:  # the page is still loading
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError("the page never reached: %s\n%s" % (expression, self.js("document.body.innerText")))

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def served_page(tmp_path, runtime):
    """`tinct-install --serve-gui --no-start` over a fake home with three GIMPs; yields (home, url)."""
    home = fake_home(tmp_path, ".config/GIMP/3.0", ".config/GIMP/2.99", ".var/app/org.gimp.GIMP/config/GIMP/3.0")
    proc = subprocess.Popen([sys.executable, "-m", "installer", "--serve-gui", "--no-start"], cwd=ROOT,
                            env=clean_env(home, runtime), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Tinct installer page: http://127.0.0.1:"), line
        yield home, line.split(": ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; tests/run installs it as root)")
    tools = DevTools(str(tmp_path / "chromium-profile"))
    yield tools
    tools.close()


ROWS = "Array.from(document.querySelectorAll('#profiles tbody tr'))"


def test_the_page_installs_and_uninstalls_the_ticked_gimps(served_page, browser):
    home, url = served_page
    native = os.path.join(home, ".config/GIMP/3.0")
    flatpak = os.path.join(home, ".var/app/org.gimp.GIMP/config/GIMP/3.0")
    browser.open(url)
    browser.wait_for("document.querySelectorAll('#profiles tbody tr').length === 3")
    rows = browser.js(ROWS + ".map(r => ({path: r.dataset.path, label: r.cells[1].textContent,"
                      " checked: r.querySelector('input').checked, disabled: r.querySelector('input').disabled,"
                      " state: r.cells[3].textContent}))")
    by_label = {r["label"]: r for r in rows}
    assert set(by_label) == {"GIMP 3.0", "GIMP 2.99", "GIMP 3.0 (Flatpak)"}
    assert by_label["GIMP 3.0"]["checked"] and not by_label["GIMP 3.0"]["disabled"]
    assert by_label["GIMP 2.99"]["disabled"] and not by_label["GIMP 2.99"]["checked"]
    assert "development preview" in by_label["GIMP 2.99"]["state"]
    assert by_label["GIMP 3.0 (Flatpak)"]["state"] == "not installed"
    # the device the engine will use, once the probe of the engine's Python is back
    device = browser.wait_for("(t => t !== 'checking…' && t !== 'checking...' && t)"
                              "(document.getElementById('device').textContent)")
    assert device.startswith(("CPU", "GPU"))

    # untick the Flatpak GIMP, then Install: only the native one gets Tinct
    browser.js(ROWS + ".find(r => r.dataset.path === %s).querySelector('input').click()" % json.dumps(flatpak))
    assert browser.js("document.getElementById('install').disabled") is False
    browser.js("document.getElementById('install').click()")
    assert browser.js("document.getElementById('install').disabled") is True  # no second job meanwhile
    browser.wait_for("document.body.dataset.jobs === '1'")
    results = browser.js("Array.from(document.querySelectorAll('#results li')).map(li => "
                         "({path: li.dataset.path, status: li.dataset.status, text: li.textContent}))")
    assert [(r["path"], r["status"]) for r in results] == [(native, "installed")]
    assert "installed Tinct" in results[0]["text"]
    assert browser.js("document.getElementById('progress').value") == 100
    assert browser.js("document.getElementById('overrides').hidden") is True
    assert os.access(os.path.join(native, "plug-ins", "tinct", "tinct.py"), os.X_OK)
    assert not os.path.exists(os.path.join(flatpak, "plug-ins"))
    # the list refreshes: the native GIMP now shows its Tinct
    browser.wait_for(ROWS + ".find(r => r.dataset.path === %s).cells[3].textContent.endsWith(' installed')"
                     % json.dumps(native))

    # Install the Flatpak one too: the page shows the flatpak override to run
    browser.js(ROWS + ".forEach(r => { const b = r.querySelector('input');"
               " b.checked = (r.dataset.path === %s); })" % json.dumps(flatpak))
    browser.js("document.getElementById('install').click()")
    browser.wait_for("document.body.dataset.jobs === '2'")
    assert "--talk-name=org.freedesktop.Flatpak" in browser.js("document.getElementById('override-commands').textContent")
    assert os.path.isfile(os.path.join(flatpak, "plug-ins", "tinct", "tinct.py"))

    # Uninstall both
    browser.js(ROWS + ".forEach(r => { const b = r.querySelector('input'); if (!b.disabled) b.checked = true; })")
    browser.js("document.getElementById('uninstall').click()")
    browser.wait_for("document.body.dataset.jobs === '3'")
    statuses = browser.js("Array.from(document.querySelectorAll('#results li')).map(li => li.dataset.status)")
    assert statuses == ["removed", "removed"]
    assert not os.path.exists(os.path.join(native, "plug-ins"))
    assert not os.path.exists(os.path.join(flatpak, "plug-ins"))
    assert not os.path.exists(os.path.join(home, ".config", "tinct"))


def test_the_page_explains_when_no_gimp_is_found(tmp_path, runtime, browser):
    home = fake_home(tmp_path, "Documents")
    proc = subprocess.Popen([sys.executable, "-m", "installer", "--serve-gui", "--no-start"], cwd=ROOT,
                            env=clean_env(home, runtime), stdout=subprocess.PIPE, universal_newlines=True)
    try:
        url = proc.stdout.readline().split(": ", 1)[1].strip()
        browser.open(url)
        text = browser.wait_for("(e => !e.hidden && e.textContent)(document.getElementById('no-gimp'))")
        assert "No GIMP profile found" in text and os.path.join(home, ".config", "GIMP") in text
        assert "--gimp-dir" in text
        assert browser.js("document.getElementById('install').disabled") is True
    finally:
        proc.terminate()
        proc.wait(10)
