"""``ovc serve``: the real server (uvicorn subprocess) on a loopback port, driven over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(published, registry_copy, tmp_path):
    """``ovc serve`` on 127.0.0.1:<free port> over a private registry copy, media root = the raw videos."""
    import httpx

    port = _free_port()
    media = published.root / "raw" / "videos"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = [
        sys.executable,
        "-m",
        "ovc.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--registry",
        registry_copy,
        "--media-root",
        str(media),
        *[a for o in published.overrides for a in ("-S", o)],
        "-S",
        "serve.max_upload_mb=0.5",
        "-S",
        "serve.vocab_check_s=0",
        "-S",
        "serve.max_duration_s=30",
    ]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"server exited {proc.returncode}: {(tmp_path / 'server.log').read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise AssertionError("server did not start: " + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base, proc, media
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_serve_classifies_stays_up_and_reloads_vocabularies(
    server, published, published_model, registry_copy, tmp_path
):
    import httpx

    from ovc.infer import Classifier
    from ovc.registry import add_labels, make_engine

    base, proc, media = server
    videos = published.videos[:3]
    clf = Classifier.from_registry("v1", "train", registry_url=registry_copy, model=published_model)
    want = clf.classify(videos, top_k=3, threshold=None)

    with httpx.Client(base_url=base, timeout=60) as c:
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["model_version"] == "v1" and "train" in health["vocabularies_loaded"]
        # an upload and a path under the media root give the in-process classifier's labels
        for v, w in zip(videos, want):
            with open(v, "rb") as f:
                up = c.post(
                    "/classify",
                    files={"file": (os.path.basename(v), f, "video/mp4")},
                    data={"vocab": "train", "top_k": "3", "threshold": "none"},
                )
            assert up.status_code == 200, up.text
            got = up.json()
            assert got["model_version"] == "v1" and got["vocab"] == "train"
            assert [x["label"] for x in got["labels"]] == [x["label"] for x in w.labels]
            assert [x["score"] for x in got["labels"]] == pytest.approx([x["score"] for x in w.labels], abs=1e-5)
            by_path = c.post("/classify", params={"path": os.path.basename(v), "top_k": 3, "threshold": "none"})
            assert by_path.status_code == 200 and by_path.json()["labels"] == got["labels"]
        seg = c.post("/classify", data={"path": os.path.basename(videos[0]), "segments": "true", "threshold": "0"})
        assert seg.status_code == 200, seg.text
        assert seg.json()["segments"] and set(seg.json()["segments"][0]) == {"label", "start", "end", "score"}

        # bad requests: 4xx with a message, and the server stays up
        text = tmp_path / "notes.mp4"
        text.write_text("just some text, not a video\n" * 20)
        big = os.urandom(600 * 1024)
        bad = {
            "empty": c.post("/classify", files={"file": ("empty.mp4", b"", "video/mp4")}),
            "text": c.post("/classify", files={"file": ("notes.mp4", text.read_bytes(), "video/mp4")}),
            "oversize": c.post("/classify", files={"file": ("big.mp4", big, "video/mp4")}),
            "dotdot": c.post("/classify", data={"path": "../registry.db"}),
            "absolute": c.post("/classify", data={"path": "/etc/passwd"}),
            "vocab": c.post("/classify", data={"path": os.path.basename(videos[0]), "vocab": "no-such-vocab"}),
            "top_k": c.post("/classify", data={"path": os.path.basename(videos[0]), "top_k": "many"}),
            "nothing": c.post("/classify"),
            "nul": c.post("/classify", data={"path": "a\x00b.mp4"}),  # Path.resolve raises ValueError: was a 500
            # chunked (no Content-Length): was spooled whole to disk by the form parser before the size check
            "chunked": c.post(
                "/classify",
                content=(b"x" * 65536 for _ in range(16)),
                headers={"content-type": "multipart/form-data; boundary=b"},
            ),
        }
        expect = {
            "empty": 400,
            "text": 422,
            "oversize": 413,
            "dotdot": 403,
            "absolute": 403,
            "vocab": 404,
            "top_k": 400,
            "nothing": 400,
            "nul": 400,
            "chunked": 411,
        }
        assert {k: r.status_code for k, r in bad.items()} == expect
        assert "empty upload" in bad["empty"].json()["detail"] and "notes.mp4" in bad["text"].json()["detail"]
        assert "outside the media root" in bad["dotdot"].json()["detail"]
        assert "not a usable file path" in bad["nul"].json()["detail"]
        assert "limit" in bad["oversize"].json()["detail"] and "top_k" in bad["top_k"].json()["detail"]
        # a symlink inside the media root pointing outside it is refused too
        link = media / "escape.mp4"
        link.symlink_to(text)
        try:
            assert c.post("/classify", data={"path": "escape.mp4"}).status_code == 403
        finally:
            link.unlink()

        # 20 concurrent requests: all answered
        def one(i: int) -> int:
            with httpx.Client(base_url=base, timeout=120) as cc:
                return cc.post("/classify", data={"path": os.path.basename(videos[i % 3]), "top_k": "2"}).status_code

        with ThreadPoolExecutor(20) as pool:
            assert list(pool.map(one, range(20))) == [200] * 20

        # a vocabulary changed in the registry is picked up without a restart
        before = c.get("/vocabularies").json()
        engine = make_engine(registry_copy)
        add_labels(engine, "train", ["zebra crossing"], published_model.encode_labels, "v1")
        engine.dispose()
        after = c.post("/classify", data={"path": os.path.basename(videos[0]), "threshold": "0"}).json()
        assert "zebra crossing" in {x["label"] for x in after["labels"]}
        assert after["vocab_version"] != next(v["vocab_version"] for v in before if v["name"] == "train")

        assert c.get("/healthz").status_code == 200 and proc.poll() is None
        metrics = c.get("/metrics").text
        assert 'ovc_requests_total{endpoint="/classify",status="200"}' in metrics
        assert 'status="413"' in metrics and "ovc_vocabulary_reloads 1.0" in metrics
