"""`tinct batch --ray` on a real local Ray (2 CPUs), real onnxruntime on the shipped weights, real files:
same bytes as plain `tinct batch`, failures reported, a killed job resumed, hints and damage matched by
name, s3:// through moto's server, and plain `tinct` without Ray."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers import CORPUS, ROOT, need_data

ray = pytest.importorskip("ray")

REPORT = "_tinct_report.jsonl"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray of 2 CPUs for the whole module (it takes seconds to start); the S3 test's fake
    credentials are set first so that its actors inherit them."""
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def tinct_main(*argv):
    from engine.cli import main

    return main([str(a) for a in argv])


def corpus_photos(folder, count, megapixels=None):
    """`count` real corpus photos in `folder`, black and white, upscaled to about `megapixels` if given."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(os.listdir(need_data(CORPUS)))[:count]:
        with Image.open(os.path.join(CORPUS, name)) as im:
            gray = im.convert("L")
        if megapixels:
            scale = (megapixels * 1e6 / (gray.width * gray.height)) ** 0.5
            gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.BICUBIC)
        gray.save(folder / (os.path.splitext(name)[0] + ".jpg"), quality=92)
    return folder


def pngs(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".png"))


def same_bytes(a, b, names):
    return [n for n in names if (a / n).read_bytes() != (b / n).read_bytes()]


@pytest.mark.slow
def test_twenty_photos_one_corrupt_give_plain_batchs_bytes_and_one_report_line(ray_cluster, tmp_path, capsys):
    photos = corpus_photos(tmp_path / "in", 19)
    (photos / "broken_scan.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 50)
    assert tinct_main("batch", photos, tmp_path / "plain") == 2
    capsys.readouterr()
    assert tinct_main("batch", photos, tmp_path / "ray", "--ray") == 2
    out = capsys.readouterr()
    names = pngs(tmp_path / "ray")
    assert len(names) == 19 and names == pngs(tmp_path / "plain")
    assert same_bytes(tmp_path / "plain", tmp_path / "ray", names) == []
    lines = (tmp_path / "ray" / REPORT).read_text().splitlines()
    assert len(lines) == 1
    failure = json.loads(lines[0])
    assert failure["input"].endswith("broken_scan.jpg") and "cannot read" in failure["error"]
    assert str(photos / "broken_scan.jpg") in failure["error"]  # the user's path, not a temporary copy
    assert "19 done, 0 skipped (already there), 1 failed" in out.out
    assert "photos/s" in out.out and "1 failed: reasons in" in out.err


@pytest.mark.slow
def test_a_killed_job_run_again_does_only_what_is_left(ray_cluster, tmp_path, capsys):
    photos = corpus_photos(tmp_path / "in", 20, megapixels=1.0)  # slow enough to be killed midway
    out = tmp_path / "out"
    env = dict(os.environ, RAY_ADDRESS=ray_cluster)  # joins this module's Ray: no second cluster to start
    job = subprocess.Popen([sys.executable, "-m", "engine", "batch", str(photos), str(out), "--ray"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while job.poll() is None and (not out.is_dir() or len(pngs(out)) < 4):
            time.sleep(0.05)
        job.send_signal(signal.SIGKILL)
    finally:
        job.wait()
        stderr = job.stderr.read().decode()
    settled = None  # Ray ends a dead driver's actors within moments; let one finishing a photo finish
    while settled != sorted(os.listdir(out)):
        settled = sorted(os.listdir(out))
        time.sleep(2)
    first = {n: (out / n).stat() for n in pngs(out)}
    assert 4 <= len(first) < 20, stderr
    for n in first:  # what the killed job left is complete: outputs appear only whole
        with Image.open(out / n) as im:
            im.load()
    assert tinct_main("batch", photos, out, "--ray") == 0
    summary = capsys.readouterr().out
    assert "%d done, %d skipped" % (20 - len(first), len(first)) in summary
    assert len(pngs(out)) == 20
    for n, st in first.items():  # not redone
        assert (out / n).stat().st_mtime_ns == st.st_mtime_ns and (out / n).stat().st_ino == st.st_ino
    assert (out / REPORT).read_text() == ""
    some = sorted(set(pngs(out)) - set(first))[:2] + sorted(first)[:1]
    plain_in = tmp_path / "some"
    plain_in.mkdir()
    for n in some:
        shutil.copy(photos / n.replace(".png", ".jpg"), plain_in)
    assert tinct_main("batch", plain_in, tmp_path / "plain") == 0
    assert same_bytes(tmp_path / "plain", out, some) == []


@pytest.mark.slow
def test_hints_and_damage_are_matched_by_name(ray_cluster, tmp_path, capsys):
    photos = corpus_photos(tmp_path / "in", 3)
    a, b, c = [os.path.splitext(n)[0] for n in sorted(os.listdir(photos))]
    size = Image.open(photos / (a + ".jpg")).size
    hints, damage = tmp_path / "hints", tmp_path / "damage"
    hints.mkdir()
    damage.mkdir()
    dots = np.zeros((size[1], size[0], 4), np.uint8)
    dots[40:46, 40:46] = (230, 20, 20, 255)
    dots[-60:-54, -60:-54] = (20, 40, 230, 255)
    Image.fromarray(dots).save(hints / (a + ".png"))
    Image.fromarray(dots).save(hints / "no_such_photo.png")  # matches nothing: ignored
    size_b = Image.open(photos / (b + ".jpg")).size
    mask = np.zeros((size_b[1], size_b[0]), np.uint8)
    mask[30:90, 50:60] = 255
    Image.fromarray(mask).save(damage / (b + ".png"))
    hints_url = "file://" + str(hints)  # a URL scheme too: file://
    assert tinct_main("batch", photos, tmp_path / "ray", "--hints-dir", hints_url, "--damage-dir", damage,
                      "--ray", "--ray-actors", "1-2") == 0
    assert "3 done" in capsys.readouterr().out
    assert tinct_main("batch", photos, tmp_path / "plain", "--hints-dir", hints, "--damage-dir", damage) == 0
    assert tinct_main("batch", photos, tmp_path / "auto") == 0
    names = [a + ".png", b + ".png", c + ".png"]
    assert same_bytes(tmp_path / "plain", tmp_path / "ray", names) == []
    # the hints and the mask did change their own photo, and only theirs
    assert same_bytes(tmp_path / "auto", tmp_path / "ray", names) == [a + ".png", b + ".png"]


@pytest.mark.slow
def test_object_storage_urls_through_moto_s3_server(ray_cluster, tmp_path, capsys):
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = "http://127.0.0.1:%d" % port
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="archive")
        photos = corpus_photos(tmp_path / "in", 3)
        (photos / "torn.jpg").write_bytes(b"torn beyond repair")
        for n in os.listdir(photos):
            s3.upload_file(str(photos / n), "archive", "scans/" + n)
        query = "?endpoint_override=127.0.0.1:%d&scheme=http" % port
        assert tinct_main("batch", "s3://archive/scans" + query, "s3://archive/colored" + query, "--ray") == 2
        assert "3 done, 0 skipped (already there), 1 failed" in capsys.readouterr().out
        listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="archive", Prefix="colored/")["Contents"]
                        if not o["Key"].endswith("/"))  # pyarrow marks the folder with an empty "colored/"
        assert listed == ["colored/" + n for n in [REPORT] + sorted(n.replace(".jpg", ".png") for n in
                                                                    os.listdir(photos) if n != "torn.jpg")]
        report = s3.get_object(Bucket="archive", Key="colored/" + REPORT)["Body"].read().decode().splitlines()
        assert len(report) == 1 and json.loads(report[0])["input"] == "s3://archive/scans/torn.jpg"
        assert tinct_main("batch", photos, tmp_path / "plain") == 2
        for n in pngs(tmp_path / "plain"):
            assert s3.get_object(Bucket="archive", Key="colored/" + n)["Body"].read() == \
                (tmp_path / "plain" / n).read_bytes()
        # run again: everything done is skipped, only the torn scan is tried again
        assert tinct_main("batch", "s3://archive/scans" + query, "s3://archive/colored" + query, "--ray") == 2
        assert "0 done, 3 skipped (already there), 1 failed" in capsys.readouterr().out
    finally:
        server.stop()


def run_cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "engine"] + [str(a) for a in argv], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinct: error:") and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_unreachable_ray_address_is_one_clear_line(tmp_path):
    corpus_photos(tmp_path / "in", 1)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_ADDRESS="127.0.0.1:%d" % port)
    one_line_error(run_cli("batch", tmp_path / "in", tmp_path / "out", "--ray", env=env),
                   "cannot reach the Ray cluster at 127.0.0.1:%d" % port, "ray start --head")
    one_line_error(run_cli("batch", tmp_path / "in", tmp_path / "out", "--ray", "ray://127.0.0.1:%d" % port),
                   "cannot reach the Ray cluster at ray://127.0.0.1:%d" % port)


def test_bad_ray_options_are_one_line_before_ray_starts(tmp_path):
    corpus_photos(tmp_path / "in", 1)
    one_line_error(run_cli("batch", tmp_path / "in", tmp_path / "out", "--ray", "--ray-actors", "3-1"),
                   "--ray-actors 3-1")
    one_line_error(run_cli("batch", tmp_path / "in", tmp_path / "out", "--ray-actors", "2"), "needs --ray")
    one_line_error(run_cli("batch", tmp_path / "nowhere", tmp_path / "out", "--ray"), "nowhere", "not found")


def test_actor_counts_parse_to_ray_datas_concurrency():
    from engine import TinctError
    from engine.batch_ray import parse_actors

    assert parse_actors("4") == 4 and parse_actors("2-8") == (2, 8)
    for bad in ("0", "x", "5-2", "1-2-3", ""):
        with pytest.raises(TinctError):
            parse_actors(bad)


def test_plain_tinct_never_imports_ray(tmp_path):
    corpus_photos(tmp_path / "in", 1)
    code = ("import sys; from engine.cli import build_parser, main; build_parser().format_help(); "
            "rc = main(['batch', sys.argv[1], sys.argv[2]]); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'fsspec')))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stdout + r.stderr
    assert len(pngs(tmp_path / "out")) == 1


def test_batch_help_teaches_the_ray_options():
    r = run_cli("batch", "--help")
    assert r.returncode == 0
    for needle in ("--ray [ADDRESS]", "RAY_ADDRESS", "--ray-actors N|MIN-MAX", "s3://", REPORT):
        assert needle in r.stdout
