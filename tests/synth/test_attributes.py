"""Stage ``attributes``: K visual descriptions per label from an LLM (seq2seq or an OpenAI-compatible
endpoint), cached by (label, prompt, model), with provenance; or the hand-written file, named as such."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pandas as pd
import pytest

from ovc.config import load_config
from ovc.pipeline import run_stage
from tests.helpers import REPO_ROOT

LABELS = ["dog", "red car", "running"]


def _project(tmp_path: Path, *overrides: str, hand_written: dict | None = None):
    clean = tmp_path / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "label": LABELS,
            "vertical": ["Animals", "Vehicles", "Actions"],
            "kind": ["entity", "entity", "action"],
            "vocab": ["train"] * 3,
        }
    ).to_parquet(clean / "vocabulary.parquet")
    (clean / "attributes.json").write_text(
        json.dumps(hand_written if hand_written is not None else {"dog": ["four legs", "a tail"]})
    )
    return load_config(REPO_ROOT / "params.yaml", [f"paths.data={tmp_path}", *overrides])


def test_hand_written_attributes_keep_their_name_and_missing_ones_fail_naming_the_file(tmp_path):
    from ovc.models.methods import MissingAttributesError, build_method, read_attributes

    cfg = _project(tmp_path, "clip.model=ovc-vit-tiny", "clip.pretrained=")
    with pytest.raises(
        MissingAttributesError, match=r"attributes/attributes.json not found; run `ovc stage attributes`"
    ):
        build_method(cfg, "clip_fixed_attributes")
    summary = run_stage("attributes", cfg)
    assert summary["provider"] == "hand-written" and summary["described"] == 1 and summary["failed"] == 2
    assert json.loads((tmp_path / "attributes" / "attributes.json").read_text()) == {"dog": ["four legs", "a tail"]}
    prov = json.loads((tmp_path / "attributes" / "provenance.json").read_text())
    assert set(prov["failed"]) == {"red car", "running"} and "no hand-written description" in prov["failed"]["running"]
    assert read_attributes(cfg) == {"dog": ["four legs", "a tail"]}  # what build_method hands clip_fixed_attributes


def test_openai_compatible_endpoint_answers_are_parsed_cached_and_attributed(tmp_path):
    asked: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(body)
            label = body["messages"][0]["content"].split("video of ")[1].split(" shows")[0]
            reply = {
                "choices": [
                    {"message": {"content": f"1. {label} in motion\n- bright colours\n* {label} in motion\n\n"}}
                ]
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = _project(
            tmp_path,
            "attributes.provider=openai-compatible",
            "attributes.model=fake-llm",
            "attributes.k=3",
            f"attributes.endpoint=http://127.0.0.1:{server.server_address[1]}/v1/chat/completions",
        )
        first = run_stage("attributes", cfg)
        again = run_stage("attributes", cfg)  # every reply comes from the cache
    finally:
        server.shutdown()
    assert len(asked) == 3 and asked[0]["model"] == "fake-llm"
    got = json.loads((tmp_path / "attributes" / "attributes.json").read_text())
    assert got["dog"] == ["dog in motion", "bright colours"]  # numbering/bullets stripped, duplicates dropped
    assert first["cached"] == 0 and again["cached"] == 3 and again["described"] == 3
    prov = json.loads((tmp_path / "attributes" / "provenance.json").read_text())
    assert (prov["provider"], prov["model"], prov["k"]) == ("openai-compatible", "fake-llm", 3)


def test_seq2seq_model_dir_generates_descriptions(tmp_path):
    from ovc.models.llm import tiny_t5

    model, tokenizer = tiny_t5()
    model.save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    cfg = _project(
        tmp_path,
        "attributes.provider=seq2seq",
        f"attributes.model={tmp_path / 't5'}",
        "attributes.max_tokens=6",
        "compute.device=cpu",
    )
    from ovc.synth.attributes import AttributesError

    try:
        summary = run_stage("attributes", cfg)
    except AttributesError as e:  # a random-weight T5 may decode only special tokens for every label
        assert "no label got a description" in str(e)
        summary = None
    # every label was asked once through generate, and its reply cached by (label, prompt, model)
    cached = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "attributes").rglob("*.json")]
    assert sorted(c["label"] for c in cached) == sorted(LABELS)
    assert all(
        c["provider"] == "seq2seq" and c["model"] == str(tmp_path / "t5") and c["label"] in c["prompt"] for c in cached
    )
    if summary is not None:
        assert summary["described"] + summary["failed"] == 3 and run_stage("attributes", cfg)["cached"] == 3
