"""Synthetic-label providers behind one interface (paper §4.4: extra training labels from a
multimodal LLM; the paper's pipeline is in its supplementary Section I).

=====================  ======================================================================
``openai-compatible``  POST frames (base64 JPEG) + prompt to ``/v1/chat/completions`` of any
                       OpenAI-compatible server (vLLM, Ollama, LM Studio serving LLaVA, Qwen-VL,
                       ...); timeouts, retries with exponential backoff, a rate limit.
``transformers``       a local image-text-to-text model directory (``local_files_only=True``).
``clip-tagger``        offline default: the current CLIP (bootstrapped or real weights, resolved
                       like every stage) scores the training vocabulary on each clip with the
                       class-name prompt and keeps confident labels (threshold, top-k).
=====================  ======================================================================

Every provider answers ``label_video(item) -> ProviderAnswer`` (raw labels with scores, or an
error). The two generative ones cache each reply on disk keyed by (video file digest, prompt,
model, provider, frames, size): a re-run costs no request.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ovc.config import Config, SynthLabelsConfig
from ovc.synth.labels import MalformedReplyError, parse_label_list

log = logging.getLogger(__name__)


class SynthProviderError(RuntimeError):
    """A provider that cannot run at all (missing model dir, unknown provider, ...); names what to provide."""


class RequestError(RuntimeError):
    """One request failed for good (after retries, or a non-retryable HTTP status)."""


@dataclass
class VideoItem:
    video_id: str
    path: str
    frames: torch.Tensor | None = (
        None  # (F, 3, H, W) uint8 decoded ahead by the stage's loader (clip-tagger), else None
    )


@dataclass
class ProviderAnswer:
    """Raw (not yet normalised) labels with scores in [0, 1], best first, or an error."""

    labels: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    cached: bool = False
    requests: int = 0


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (the video part of the cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_frames(path: str, num_frames: int, size: int, max_pixels: int | None = None) -> torch.Tensor:
    """(F, 3, size, size) uint8, uniform sampling (the evaluation reader; ``reader.max_pixels`` guard)."""
    from ovc.data.video import DEFAULT_MAX_PIXELS, read_frames

    return read_frames(path, num_frames, size, sampling="uniform", max_pixels=max_pixels or DEFAULT_MAX_PIXELS)


def frames_to_jpeg(frames: torch.Tensor, quality: int) -> list[bytes]:
    from PIL import Image

    out = []
    for f in frames:  # (3, H, W) uint8
        buf = io.BytesIO()
        Image.fromarray(f.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)  # (3, H, W) -> (H, W, 3)
        out.append(buf.getvalue())
    return out


def render_prompt(template: str, vocabulary: list[str]) -> str:
    return template.replace("{vocabulary}", ", ".join(vocabulary)) if "{vocabulary}" in template else template


# --------------------------------------------------------------------------------------------------
# Generative providers: shared cache + per-video loop
# --------------------------------------------------------------------------------------------------
class ReplyCache:
    """One JSON file per key under ``root`` (``<key[:2]>/<key>.json``), written atomically."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is simply asked again

    def put(self, key: str, value: dict[str, Any]) -> None:
        from ovc.data.manifest import atomic_write_json

        atomic_write_json(self._path(key), value)


class GenerativeProvider:
    """Base of the VLM providers: frames -> cached ``_ask`` -> parsed label list (score 1.0)."""

    name = ""

    def __init__(self, sc: SynthLabelsConfig, vocabulary: list[str], cache_dir: Path):
        self.sc = sc
        self.prompt = render_prompt(sc.prompt, vocabulary)
        self.model = sc.model
        self.cache = ReplyCache(cache_dir)

    def cache_key(self, digest: str) -> str:
        sc = self.sc
        key = {
            "provider": self.name,
            "model": self.model,
            "prompt": self.prompt,
            "video": digest,
            "num_frames": sc.num_frames,
            "image_size": sc.image_size,
            "max_tokens": sc.max_tokens,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _ask(self, frames: torch.Tensor) -> tuple[str, int]:  # pragma: no cover - abstract
        """Frames -> (reply text, requests made)."""
        raise NotImplementedError

    def label_video(self, item: VideoItem) -> ProviderAnswer:
        try:
            key = self.cache_key(file_digest(item.path))
        except OSError as e:
            return ProviderAnswer(error=f"cannot read {item.path}: {e}")
        hit = self.cache.get(key)
        if hit is not None:
            return ProviderAnswer([(lab, 1.0) for lab in parse_label_list(hit["reply"])], cached=True)
        try:
            frames = load_frames(item.path, self.sc.num_frames, self.sc.image_size)
            reply, n = self._ask(frames)
            labels = parse_label_list(reply)
        except (RequestError, MalformedReplyError) as e:
            return ProviderAnswer(error=str(e), requests=getattr(e, "requests", 0))
        except Exception as e:  # noqa: BLE001 - one bad video (decode error, ...) is reported, not fatal
            return ProviderAnswer(error=f"{type(e).__name__}: {e}")
        self.cache.put(key, {"reply": reply, "provider": self.name, "model": self.model, "video_id": item.video_id})
        return ProviderAnswer([(lab, 1.0) for lab in labels], requests=n)


class OpenAICompatibleProvider(GenerativeProvider):
    """Chat-completions client (OpenAI wire format) for a local or remote VLM server.

    Request: one user message whose content is the prompt text followed by the frames as
    ``image_url`` parts (``data:image/jpeg;base64,...``), ``temperature`` 0, ``max_tokens``.
    Reply: ``choices[0].message.content`` parsed by :func:`parse_label_list`.
    Retried (``retries`` times, delay ``backoff_s · 2^attempt``): timeouts, connection errors, HTTP
    429 and 5xx. Not retried: other HTTP errors and malformed replies (reported per video).
    """

    name = "openai-compatible"

    def __init__(
        self, sc: SynthLabelsConfig, vocabulary: list[str], cache_dir: Path, sleep: Callable[[float], None] = time.sleep
    ):
        super().__init__(sc, vocabulary, cache_dir)
        if not sc.endpoint:
            raise SynthProviderError("synth_labels.endpoint is empty; set it to the server's /v1/chat/completions URL")
        if not sc.model:
            raise SynthProviderError("synth_labels.model is empty; set it to the model name the server serves")
        self.sleep = sleep
        self._last_request = 0.0

    def _rate_limit(self) -> None:
        if self.sc.requests_per_second > 0:
            wait = self._last_request + 1.0 / self.sc.requests_per_second - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._last_request = time.monotonic()

    def body(self, frames: torch.Tensor) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": self.prompt}]
        for jpg in frames_to_jpeg(frames, self.sc.jpeg_quality):
            content.append(
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpg).decode()}}
            )
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.sc.max_tokens,
            "temperature": 0,
        }

    def _post(self, payload: bytes) -> tuple[bytes, int]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.sc.api_key_env, "") if self.sc.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = ""
        for attempt in range(self.sc.retries + 1):
            if attempt:
                self.sleep(self.sc.backoff_s * 2 ** (attempt - 1))
            self._rate_limit()
            req = urllib.request.Request(self.sc.endpoint, data=payload, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.sc.timeout_s) as resp:
                    return resp.read(), attempt + 1
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if e.code != 429 and e.code < 500:
                    err = RequestError(f"{self.sc.endpoint}: {last}: {e.read()[:200]!r}")
                    err.requests = attempt + 1  # type: ignore[attr-defined]
                    raise err from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            log.info(
                "synth_labels: request %d/%d to %s failed (%s)",
                attempt + 1,
                self.sc.retries + 1,
                self.sc.endpoint,
                last,
            )
        err = RequestError(f"{self.sc.endpoint}: failed after {self.sc.retries + 1} attempt(s): {last}")
        err.requests = self.sc.retries + 1  # type: ignore[attr-defined]
        raise err

    def _ask(self, frames: torch.Tensor) -> tuple[str, int]:
        raw, n = self._post(json.dumps(self.body(frames)).encode())
        try:
            reply = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            err = MalformedReplyError(f"{self.sc.endpoint}: malformed chat-completions reply: {raw[:200]!r}")
            err.requests = n  # type: ignore[attr-defined]
            raise err from None
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content, n


class TransformersProvider(GenerativeProvider):
    """A local image-text-to-text model (``AutoModelForImageTextToText`` + ``AutoProcessor``) from
    the directory ``synth_labels.model``, loaded with ``local_files_only=True``; greedy decoding."""

    name = "transformers"

    def __init__(self, sc: SynthLabelsConfig, vocabulary: list[str], cache_dir: Path):
        super().__init__(sc, vocabulary, cache_dir)
        d = Path(sc.model).expanduser() if sc.model else None
        if d is None or not (d / "config.json").is_file():
            raise SynthProviderError(
                f"synth_labels.provider=transformers needs synth_labels.model = a local image-text-to-text model directory "
                f"(config.json, weights, processor/tokenizer files, chat template); {str(d) if d else '(empty)'} "
                f"{'has no config.json' if d is not None and d.is_dir() else 'does not exist'}"
            )
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(str(d), local_files_only=True)
            self.hf_model = AutoModelForImageTextToText.from_pretrained(str(d), local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise SynthProviderError(
                f"cannot load the image-text-to-text model in {d}: {type(e).__name__}: {e}"
            ) from None
        self.model = str(d)

    @torch.no_grad()
    def _ask(self, frames: torch.Tensor) -> tuple[str, int]:
        from PIL import Image

        images = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]  # (3, H, W) -> (H, W, 3)
        messages = [
            {"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": self.prompt}]}
        ]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=images, return_tensors="pt")
        out = self.hf_model.generate(**inputs, max_new_tokens=self.sc.max_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]  # (1, T_total) -> (1, T_new)
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0], 0


# --------------------------------------------------------------------------------------------------
# The offline default
# --------------------------------------------------------------------------------------------------
class ClipTaggerProvider:
    """The current CLIP as a tagger: p(ℓ | v) = softmax over the vocabulary of
    logit_scale · ⟨CLIP_text("a video of {ℓ}."), mean_f CLIP_image(frame_f)⟩; keeps labels with
    p ≥ ``threshold``, at most ``top_k`` (the clip_classname baseline's prompt and video side)."""

    name = "clip-tagger"

    def __init__(self, cfg: Config, vocabulary: list[str]):
        from ovc.models.clip import create_clip
        from ovc.models.device import resolve_device
        from ovc.models.pretrained import resolve_clip_config

        if not vocabulary:
            raise SynthProviderError("clip-tagger: the candidate (training) vocabulary is empty")
        clip_cfg = resolve_clip_config(cfg)
        self.device = resolve_device(cfg.compute.device)
        self.max_pixels = cfg.reader.max_pixels
        self.clip = create_clip(clip_cfg, device=self.device)
        self.frame_size = int(self.clip.image_size[0])  # the synth stage decodes clips ahead at this size
        self.model = f"{clip_cfg.model}:{clip_cfg.pretrained}"
        self.sc = cfg.synth_labels
        self.vocabulary = list(vocabulary)
        template = cfg.baselines.classname_template
        with torch.no_grad():
            chunks = [
                self.clip.encode_text(
                    self.clip.tokenize([template.replace("{label}", lab) for lab in self.vocabulary[i : i + 256]])
                )
                for i in range(0, len(self.vocabulary), 256)
            ]
        self.text = torch.cat(chunks)  # (L, D) unit norm
        self.scale = float(self.clip.model.logit_scale.exp().clamp(max=100.0))

    @torch.no_grad()
    def label_video(self, item: VideoItem) -> ProviderAnswer:
        from ovc.data.loader import to_model_input
        from ovc.data.video import VideoReadError

        frames = item.frames
        if frames is None:
            try:
                frames = load_frames(item.path, self.sc.num_frames, self.frame_size, self.max_pixels)
            except VideoReadError as e:
                return ProviderAnswer(error=str(e))
        x = to_model_input(
            frames, self.device, self.clip.image_mean, self.clip.image_std
        )  # (F, 3, H, W) float on the device
        emb = torch.nn.functional.normalize(
            self.clip.encode_image(x, normalize=True).float().mean(0), dim=-1
        )  # (F, D) -> (D,)
        p = torch.softmax(self.scale * (self.text.float() @ emb), dim=0).cpu()  # (L,)
        order = torch.argsort(p, descending=True).tolist()
        return ProviderAnswer([(self.vocabulary[j], float(p[j])) for j in order[: max(self.sc.top_k, 0) or len(order)]])


PROVIDERS = ("openai-compatible", "transformers", "clip-tagger")


def create_provider(cfg: Config, vocabulary: list[str], cache_dir: Path):
    """The provider named by ``cfg.synth_labels.provider`` (SynthProviderError lists the known ones)."""
    sc = cfg.synth_labels
    if sc.provider == "openai-compatible":
        return OpenAICompatibleProvider(sc, vocabulary, cache_dir)
    if sc.provider == "transformers":
        return TransformersProvider(sc, vocabulary, cache_dir)
    if sc.provider == "clip-tagger":
        return ClipTaggerProvider(cfg, vocabulary)
    raise SynthProviderError(f"unknown synth_labels.provider {sc.provider!r}; known: {', '.join(PROVIDERS)}")
