"""K short visual descriptions per label for the fixed-LLM-attributes baseline (the ``attributes``
stage, :mod:`ovc.stages.attributes`, writes them)
(paper §3.1 "Fixed LLM prompting", after Menon & Vondrick; §4.2 "CLIP with Fixed LLM Prompts").

Providers (``attributes.provider``):

* ``seq2seq`` — a local seq2seq model directory (e.g. Flan-T5; ``attributes.model``), loaded with
  ``local_files_only`` and asked with ``generate`` (greedy);
* ``openai-compatible`` — a chat-completions endpoint (vLLM, Ollama, ...; ``attributes.endpoint``,
  ``attributes.model``), with the synthetic labeller's retries and backoff;
* ``hand-written`` — no LLM: the clean ``attributes.json`` the dataset (or the offline synthetic
  world) ships. Tables then name the row "CLIP with hand-written attributes", never "LLM".

Each reply is cached by (label, prompt, model, provider, K) under ``attributes.cache_dir`` (outside
DVC outs: a re-run asks nothing again). Outputs (``<data>/attributes/``): ``attributes.json``
({label: [descriptions]}, what ``clip_fixed_attributes`` reads) and ``provenance.json`` (provider,
model, prompt, K, per-label source, failures). A label whose reply yields no description is reported
in ``failed`` and left out; the run goes on for the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from ovc.config import Config
from ovc.models.methods import HAND_WRITTEN, read_attributes_provenance

log = logging.getLogger(__name__)

PROVIDERS = (HAND_WRITTEN, "seq2seq", "openai-compatible")


class AttributesError(RuntimeError):
    """The attributes stage cannot run (missing model dir, no labels, every label failed)."""


read_provenance = read_attributes_provenance  # the models layer reads what this stage writes


def parse_descriptions(reply: str, k: int) -> list[str]:
    """Up to ``k`` descriptions from a reply: one per line (or ``;``), bullets/numbers stripped, deduplicated."""
    out: list[str] = []
    for part in re.split(r"[\n;]+", reply):
        text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", part).strip().strip('"').strip()
        if text and text.lower() not in (o.lower() for o in out):
            out.append(text)
        if len(out) >= k:
            break
    return out


def _cache_key(label: str, prompt: str, model: str, provider: str, k: int) -> str:
    return hashlib.sha256(json.dumps([label, prompt, model, provider, k]).encode()).hexdigest()


class _Seq2Seq:
    """A local seq2seq model asked with ``generate`` (greedy), batched over labels."""

    def __init__(self, cfg: Config):
        from transformers import AutoModelForSeq2SeqLM

        from ovc.models.device import resolve_device
        from ovc.models.llm import load_pretrained

        ac = cfg.attributes
        if not ac.model:
            raise AttributesError(
                "attributes.provider=seq2seq needs attributes.model = a seq2seq model dir (or hub id, e.g. google/flan-t5-base)"
            )
        self.device = resolve_device(cfg.compute.device)
        model, self.tokenizer = load_pretrained(
            ac.model, AutoModelForSeq2SeqLM
        )  # offline: local files only, fails naming what to provide
        self.model: Any = model.to(self.device).eval()  # a transformers model (untyped generate)
        self.max_tokens = ac.max_tokens

    def ask(self, prompts: list[str]) -> list[str]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_tokens, do_sample=False, num_beams=1)
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)


class _Endpoint:
    """An OpenAI-compatible chat-completions endpoint (text only), through the synthetic labeller's
    HTTP client (retries on timeouts, 429 and 5xx with exponential backoff; API key from an env var)."""

    def __init__(self, cfg: Config, cache_dir: Path):
        from ovc.synth.providers import OpenAICompatibleProvider

        ac = cfg.attributes
        sc = dataclasses.replace(
            cfg.synth_labels,
            endpoint=ac.endpoint,
            model=ac.model,
            api_key_env=ac.api_key_env,
            timeout_s=ac.timeout_s,
            max_tokens=ac.max_tokens,
            requests_per_second=0.0,
        )
        self.client = OpenAICompatibleProvider(sc, [], cache_dir)

    def ask(self, prompts: list[str]) -> list[str]:
        out = []
        for prompt in prompts:
            body = {
                "model": self.client.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.client.sc.max_tokens,
                "temperature": 0,
            }
            raw, _ = self.client._post(json.dumps(body).encode())
            reply = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
            out.append(
                content
                if isinstance(content, str)
                else " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            )
        return out


def describe_labels(
    cfg: Config, labels: list[str], hand_written: Path, cache_root: Path
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """K descriptions per label from ``attributes.provider`` (cached replies are never asked again).

    Args:
        cfg: the whole config (``attributes.*``; ``llm`` for the seq2seq provider's defaults).
        labels: the labels to describe.
        hand_written: the dataset's own ``{label: [descriptions]}`` file (``hand-written`` provider).
        cache_root: where replies are cached by (label, prompt, model, provider, K).

    Returns:
        ({label: [descriptions]} of the labels that got at least one, provenance with ``failed``
        {label: reason} for the others).

    Raises:
        AttributesError: unknown provider, or no label got a description.
    """
    from ovc.synth.providers import ReplyCache

    ac = cfg.attributes
    if ac.provider not in PROVIDERS:
        raise AttributesError(f"unknown attributes.provider {ac.provider!r}; known: {', '.join(PROVIDERS)}")
    prov: dict[str, Any] = {"provider": ac.provider, "k": ac.k, "labels": len(labels)}
    result: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    if ac.provider == HAND_WRITTEN:
        src = hand_written
        given = json.loads(src.read_text()) if src.is_file() else {}
        for label in labels:
            descs = [d for d in given.get(label, []) if isinstance(d, str) and d.strip()][: ac.k]
            if descs:
                result[label] = descs
            else:
                failed[label] = f"no hand-written description in {src}"
        prov.update(source=str(src), model="", prompt="")
    else:
        cache = ReplyCache(cache_root)
        model_id = ac.model
        asker = _Seq2Seq(cfg) if ac.provider == "seq2seq" else _Endpoint(cfg, cache.root)
        prompts = {label: ac.prompt.replace("{label}", label).replace("{k}", str(ac.k)) for label in labels}
        keys = {label: _cache_key(label, prompts[label], model_id, ac.provider, ac.k) for label in labels}
        replies: dict[str, str] = {}
        for label in labels:
            hit = cache.get(keys[label])
            if hit is not None:
                replies[label] = hit["reply"]
        todo = [label for label in labels if label not in replies]
        from tqdm.auto import tqdm

        for i in tqdm(range(0, len(todo), ac.batch_size), desc=f"attributes ({ac.provider})", disable=None):
            batch = todo[i : i + ac.batch_size]
            try:
                answers = asker.ask([prompts[label] for label in batch])
            except Exception as e:  # noqa: BLE001 - one failed request never stops the others
                for label in batch:
                    failed[label] = f"{type(e).__name__}: {e}"
                    log.warning("attributes: %r failed: %s", label, e)
                continue
            for label, reply in zip(batch, answers):
                replies[label] = reply
                cache.put(
                    keys[label],
                    {
                        "label": label,
                        "prompt": prompts[label],
                        "model": model_id,
                        "provider": ac.provider,
                        "reply": reply,
                    },
                )
        for label, reply in replies.items():
            descs = parse_descriptions(reply, ac.k)
            if descs:
                result[label] = descs
            else:
                failed[label] = f"reply has no description: {reply[:80]!r}"
        prov.update(
            model=model_id,
            prompt=ac.prompt,
            generated=len(todo) - sum(1 for x in todo if x in failed and x not in replies),
            cached=len(labels) - len(todo),
        )
    if not result:
        raise AttributesError(
            f"attributes ({ac.provider}): no label got a description; first failure: {next(iter(failed.items()), None)}"
        )
    if failed:
        log.warning(
            "attributes: %d of %d labels without descriptions (see provenance.json 'failed')", len(failed), len(labels)
        )
    prov.update(described=len(result), failed=failed)
    return result, prov
