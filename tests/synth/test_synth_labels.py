"""Stage ``synth_labels`` (paper §4.4): providers against a local OpenAI-compatible HTTP server,
the offline CLIP tagger, label normalisation/provenance, the cache, and the merge into training."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ovc.config import Config, SynthLabelsConfig
from ovc.data.manifest import read_vocabulary, write_manifest, write_vocabulary
from ovc.data.synthworld import write_mp4
from ovc.pipeline import STAGES, run_stage
from ovc.stages.synth_labels import synth_labels
from ovc.synth.labels import normalize_label, parse_label_list
from ovc.synth.providers import OpenAICompatibleProvider, SynthProviderError
from ovc.synth.table import SynthLabelsError, merged_train_labels, merged_train_vocabulary, read_synth_labels

VOCAB = ["dog", "Red Ball", "playing guitar"]


def _world(tmp_path: Path, **synth) -> Config:
    """A clean manifest (3 train videos, 1 val) + training vocabulary under tmp_path/data."""
    clean = tmp_path / "data" / "clean"
    rng = np.random.default_rng(0)
    rows = []
    for i, (split, labels) in enumerate(
        [("train", ["dog"]), ("train", ["Red Ball"]), ("train", ["dog"]), ("val", ["dog"])]
    ):
        vid = f"v{i}"
        path = clean / "videos" / f"{vid}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8), path, fps=4)
        rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "labels": labels, "split": split, "source": "test"})
    write_manifest(pd.DataFrame(rows), clean / "manifest.parquet")
    vocab = [{"label": lab, "vertical": "Things", "kind": "entity", "vocab": "train"} for lab in VOCAB]
    write_vocabulary(pd.DataFrame(vocab), clean / "vocabulary.parquet")
    cfg = Config()
    return dataclasses.replace(
        cfg, paths=dataclasses.replace(cfg.paths, data=str(tmp_path / "data")), synth_labels=SynthLabelsConfig(**synth)
    )


class _Server:
    """A chat-completions endpoint on 127.0.0.1 answering from a script of (status, body) replies."""

    def __init__(self, replies: list[tuple[int, bytes]]):
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                status, payload = outer.replies.pop(0) if outer.replies else (500, b"script exhausted")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reply(content: str) -> tuple[int, bytes]:
    return 200, json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
    ).encode()


def test_parse_and_normalize():
    assert parse_label_list('```json\n["Dog", "red  ball"]\n```') == ["Dog", "red  ball"]
    assert parse_label_list('Sure! Here they are: ["a", "b"] hope it helps') == ["a", "b"]
    assert parse_label_list('{"labels": ["x", 3]}') == ["x", "3"]
    assert parse_label_list("1. dog\n2) red ball\n- guitar, piano; cat") == [
        "dog",
        "red ball",
        "guitar",
        "piano",
        "cat",
    ]
    assert parse_label_list("") == []
    assert normalize_label("  Playing_Guitar.  ") == "playing guitar" and normalize_label('"Ｄog"') == "dog"
    assert normalize_label(" ... ") is None and normalize_label(None) is None


def test_openai_compatible_retry_malformed_cache_and_merge(tmp_path, monkeypatch):
    monkeypatch.setenv("OVC_TEST_KEY", "sekret")
    script = [
        (500, b'{"error": "overloaded"}'),  # v0: transient failure ...
        _reply('```json\n["Dog", "Red  Ball", "unicorn"]\n```'),  # ... then success
        (200, b"<html>not json</html>"),  # v1: malformed reply (reported, not cached)
        _reply("Playing guitar, dog\n- DOG"),  # v2
    ]
    with _Server(script) as server:
        cfg = _world(
            tmp_path,
            provider="openai-compatible",
            endpoint=server.url,
            model="llava-test",
            retries=2,
            backoff_s=0.01,
            api_key_env="OVC_TEST_KEY",
            num_frames=2,
            image_size=32,
            top_k=0,
            cache_dir=str(tmp_path / "cache"),
        )
        summary = synth_labels(cfg)
        assert len(server.requests) == 4
        req = server.requests[0]
        assert req["auth"] == "Bearer sekret" and req["body"]["model"] == "llava-test"
        parts = req["body"]["messages"][0]["content"]
        assert parts[0]["type"] == "text" and [p["type"] for p in parts[1:]] == ["image_url", "image_url"]
        jpeg = base64.b64decode(parts[1]["image_url"]["url"].split(",", 1)[1])
        assert Image.open(io.BytesIO(jpeg)).size == (32, 32)

        assert summary["failed_ids"] == ["v1"] and "malformed" in summary["failed_errors"]["v1"]
        assert summary["requests"] == 4 and summary["cache_hits"] == 0
        assert summary["dropped"]["not_in_vocabulary"] == 1 and summary["unknown_labels_seen"] == {"unicorn": 1}
        labels = read_synth_labels(tmp_path / "data" / "synth_labels" / "labels.parquet")
        got = {(r.video_id, r.label, r.already_labelled) for r in labels.itertuples()}
        assert got == {
            ("v0", "dog", True),
            ("v0", "Red Ball", False),
            ("v2", "playing guitar", False),
            ("v2", "dog", True),
        }
        assert set(labels["provider"]) == {"openai-compatible"} and set(labels["model"]) == {"llava-test"}
        assert set(labels["score"]) == {1.0} and "v3" not in set(labels["video_id"])  # val is not labelled

        # re-run: answered replies come from the cache; only the malformed one is asked again
        server.replies = [_reply('["dog"]')]
        cfg2 = dataclasses.replace(cfg, synth_labels=dataclasses.replace(cfg.synth_labels, keep_unknown=True))
        summary2 = synth_labels(cfg2)
        assert len(server.requests) == 5 and summary2["cache_hits"] == 2 and summary2["failed"] == 0

    labels = read_synth_labels(tmp_path / "data" / "synth_labels" / "labels.parquet")
    assert ("v0", "unicorn") in set(zip(labels["video_id"], labels["label"]))  # keep_unknown: kept ...
    added = read_vocabulary(tmp_path / "data" / "synth_labels" / "vocabulary.parquet")
    assert added.to_dict("records") == [
        {"label": "unicorn", "vertical": "Synthetic", "kind": "entity", "vocab": "train"}
    ]

    # merge into the training data: train rows only; off by default, forced by ours_synth
    from ovc.data.manifest import read_manifest

    df = read_manifest(tmp_path / "data" / "clean" / "manifest.parquet")
    assert merged_train_labels(cfg2, df) is df
    merged = merged_train_labels(cfg2, df, method="ours_synth").set_index("video_id")
    assert merged.loc["v0", "labels"] == ["dog", "Red Ball", "unicorn"] and merged.loc["v3", "labels"] == ["dog"]
    assert merged.loc["v2", "labels"] == ["dog", "playing guitar"]
    on = dataclasses.replace(cfg2, synth_labels=dataclasses.replace(cfg2.synth_labels, merge_into_train=True))
    assert merged_train_labels(on, df).set_index("video_id").loc["v0", "labels"] == ["dog", "Red Ball", "unicorn"]
    assert merged_train_vocabulary(on, sorted(VOCAB)) == sorted(VOCAB + ["unicorn"])
    assert merged_train_vocabulary(cfg2, sorted(VOCAB)) == sorted(VOCAB)


def test_openai_compatible_unreachable_fails_clearly(tmp_path):
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _world(
        tmp_path,
        provider="openai-compatible",
        endpoint=f"http://127.0.0.1:{port}/v1/chat/completions",
        model="m",
        retries=1,
        backoff_s=0.01,
        timeout_s=2.0,
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(SynthLabelsError, match="all 3 videos failed.*failed after 2 attempt"):
        synth_labels(cfg)


def test_rate_limit_waits_between_requests(tmp_path):
    waits: list[float] = []
    sc = SynthLabelsConfig(provider="openai-compatible", model="m", requests_per_second=4.0)
    p = OpenAICompatibleProvider(sc, VOCAB, tmp_path, sleep=waits.append)
    p._rate_limit()
    p._rate_limit()
    assert len(waits) == 1 and 0.2 < waits[0] <= 0.25


def test_transformers_provider_missing_dir_fails_fast(tmp_path):
    cfg = _world(tmp_path, provider="transformers", model=str(tmp_path / "no-such-vlm"))
    with pytest.raises(SynthProviderError, match="no-such-vlm does not exist"):
        synth_labels(cfg)
    (tmp_path / "empty-vlm").mkdir()
    cfg = _world(tmp_path, provider="transformers", model=str(tmp_path / "empty-vlm"))
    with pytest.raises(SynthProviderError, match="empty-vlm has no config.json"):
        synth_labels(cfg)
    with pytest.raises(SynthProviderError, match="unknown synth_labels.provider 'gpt'"):
        synth_labels(_world(tmp_path, provider="gpt"))


def test_clip_tagger_with_bootstrapped_clip(tmp_path):
    """The offline default: the CLIP that ``resolve_clip_config`` finds (here a random ovc-vit-tiny
    saved where bootstrap_clip puts it) tags the train videos with the training vocabulary."""
    from ovc.models.clip import build_clip, save_clip_local_dir
    from ovc.models.pretrained import bootstrap_dir

    cfg = _world(tmp_path, threshold=0.0, top_k=2)
    save_clip_local_dir(build_clip(cfg.clip.model), cfg.clip.model, bootstrap_dir(cfg))
    assert list(STAGES).index("synth_labels") == list(STAGES).index("bootstrap_clip") + 1
    summary = run_stage("synth_labels", cfg)
    labels = read_synth_labels(tmp_path / "data" / "synth_labels" / "labels.parquet")
    assert summary["videos"] == 3 and summary["labels"] == 6 and summary["failed"] == 0
    assert labels.groupby("video_id").size().to_dict() == {"v0": 2, "v1": 2, "v2": 2}
    assert set(labels["label"]) <= set(VOCAB) and labels["in_vocabulary"].all()
    assert (
        set(labels["provider"]) == {"clip-tagger"}
        and labels["model"].str.startswith(f"{cfg.clip.model}:local-dir:").all()
    )
    assert ((labels["score"] > 0) & (labels["score"] <= 1)).all()
    # a threshold no label reaches keeps nothing (the video is still processed, not failed)
    cfg_strict = dataclasses.replace(cfg, synth_labels=dataclasses.replace(cfg.synth_labels, threshold=0.999))
    summary = synth_labels(cfg_strict)
    assert summary["labels"] == 0 and summary["failed"] == 0 and summary["dropped"]["below_threshold"] > 0
