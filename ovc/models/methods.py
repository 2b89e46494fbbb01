"""The one method registry: every method key of the paper's comparison (§4.2), how it is built, and
what the stages need to know about it.

Every list of method names in ovc derives from :data:`METHODS` (the train stage's trainable set,
the evaluate report's row order and display names, the feature-cache benchmark's cacheable set),
and every stage builds a method through :func:`create_method` (around a given CLIP) or
:func:`build_method` (its own CLIP from the config) and loads trained weights through
:func:`load_method` — training, evaluation, publishing and the registry's loader alike, so a
published ``ours_synth`` is rebuilt exactly as it was trained.

=========================  ======================================  =========  =============  ===========
key                        display name (table row)                trainable  frozen trunk   builds
=========================  ======================================  =========  =============  ===========
``clip_classname``         CLIP with Class name Prompt             no         yes            itself
``clip_templates``         CLIP with Prompt Templates              no         yes            itself
``clip_fixed_attributes``  CLIP with Fixed LLM Prompts             no         yes            itself
``coop``                   CoOp*                                   yes        yes            itself
``dualcoop``               DualCoOp*                               yes        yes            itself
``vificlip``               ViFi-CLIP*                              yes        no (tuned)     itself
``ours_no_temporal``       Ours: CLIP + Learnable LLM Prompts      yes        yes            itself
``ours``                   Ours: + Temporal Modeling               yes        yes            itself
``ours_synth``             Ours: + Synthetic Labels                yes        yes            ``ours``
``ours_no_reg``            Ours, no weight regularisation (λ = 0)  yes        yes            itself
=========================  ======================================  =========  =============  ===========

Untrained starts: ``<m>_step0`` for each trainable ``m`` except ``ours_synth`` and ``ours_no_reg``
(whose start is ``ours``'s) is ``m`` built and never trained, rows "<display> (step 0)" right before ``m``'s: the
evaluate table shows what training adds. They are not trainable and load no weights (the label
encoders start at the zero-shot prompt, the temporal branch at the frozen mean of frames, so these
rows sit at or near ``clip_classname``; ``vificlip_step0`` *is* it).

"frozen trunk": the video side is the frozen CLIP ViT (:class:`~ovc.models.video_encoder.VideoEncoder`),
so its trunk outputs can be cached by the ``features`` stage. ``ours_synth`` is ``ours`` trained on
the clean labels merged with the synthetic ones (paper §4.4): same model, its own weights.
``ours_no_reg`` is the weight-regularisation ablation (paper §3.2, Table 3b "✗ Spatial Reg.", frozen
backbone): ``ours`` with ``video_encoder.weight_reg_lambda = 0``, i.e. the branch's spatial layers
trained and used without interpolation towards the frozen CLIP weights (α = 1 in training and at
eval; :mod:`ovc.models.video_encoder` says why λ = 0 means that). Not in the default
``train.methods``; ``ovc bench paper_claims`` trains and evaluates it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ovc.config import Config
from ovc.paths import DataLayout

if TYPE_CHECKING:  # torch-heavy imports stay lazy: the registry is read by light modules too
    import torch

    from ovc.models.baselines import Method
    from ovc.models.clip import ClipModel
    from ovc.models.llm import LLMBackend


@dataclass(frozen=True)
class MethodSpec:
    """What ovc knows about one method key.

    Attributes:
        name: the key (``metrics.json``, ``train.methods``, ``evaluate.methods``, registry params).
        display: row name in the results tables (paper Table 1/2 wording).
        trainable: the ``train`` stage trains it (it has parameters to learn).
        frozen_trunk: its video side is the frozen CLIP ViT (the feature cache can stand in for it).
        base: the model key it builds (``ours_synth`` -> ``ours``, ``coop_step0`` -> ``coop``); itself otherwise.
        untrained: the untrained start (step 0) of the trainable method ``base``.
        variant_of: a trainable method this one only re-configures (``ours_no_reg`` -> ``ours``: same
            architecture and initial weights, another ``video_encoder`` config), so it has no untrained
            start of its own (``<variant_of>_step0`` is it) and nothing of its own for cost benchmarks.
    """

    name: str
    display: str
    trainable: bool
    frozen_trunk: bool
    base: str = ""
    untrained: bool = False
    variant_of: str = ""

    @property
    def builds(self) -> str:
        return self.base or self.name


STEP0_SUFFIX = "_step0"


def _with_untrained_starts(specs: tuple[MethodSpec, ...]) -> tuple[MethodSpec, ...]:
    """Each trainable method preceded by its untrained start ``<name>_step0`` (not ``ours_synth`` nor
    ``ours_no_reg``: at step 0 both are ``ours`` exactly — θ_ft = θ_frozen makes α irrelevant, W_out = 0)."""
    out: list[MethodSpec] = []
    for s in specs:
        if s.trainable and not s.base and not s.variant_of:
            out.append(
                MethodSpec(
                    s.name + STEP0_SUFFIX,
                    f"{s.display} (step 0)",
                    trainable=False,
                    frozen_trunk=s.frozen_trunk,
                    base=s.name,
                    untrained=True,
                )
            )
        out.append(s)
    return tuple(out)


# paper's row order (Table 1): baselines, then ours and its ablations; each untrained start before its method
METHODS: dict[str, MethodSpec] = {
    s.name: s
    for s in _with_untrained_starts(
        (
            MethodSpec("clip_classname", "CLIP with Class name Prompt", trainable=False, frozen_trunk=True),
            MethodSpec("clip_templates", "CLIP with Prompt Templates", trainable=False, frozen_trunk=True),
            MethodSpec("clip_fixed_attributes", "CLIP with Fixed LLM Prompts", trainable=False, frozen_trunk=True),
            MethodSpec("coop", "CoOp*", trainable=True, frozen_trunk=True),
            MethodSpec("dualcoop", "DualCoOp*", trainable=True, frozen_trunk=True),
            MethodSpec("vificlip", "ViFi-CLIP*", trainable=True, frozen_trunk=False),
            MethodSpec("ours_no_temporal", "Ours: CLIP + Learnable LLM Prompts", trainable=True, frozen_trunk=True),
            MethodSpec("ours", "Ours: + Temporal Modeling", trainable=True, frozen_trunk=True),
            MethodSpec("ours_synth", "Ours: + Synthetic Labels", trainable=True, frozen_trunk=True, base="ours"),
            # ablation (Table 3b), after the Table 1 rows
            MethodSpec(
                "ours_no_reg",
                "Ours, no weight regularisation (λ = 0)",
                trainable=True,
                frozen_trunk=True,
                variant_of="ours",
            ),
        )
    )
}

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
TRAINABLE_METHODS: tuple[str, ...] = tuple(n for n, s in METHODS.items() if s.trainable)
CACHEABLE_METHODS: tuple[str, ...] = tuple(n for n, s in METHODS.items() if s.trainable and s.frozen_trunk)
DISPLAY_NAMES: dict[str, str] = {n: s.display for n, s in METHODS.items()}
ATTRIBUTES_FILE = "attributes/attributes.json"  # under paths.data: {label: [descriptions]} of clip_fixed_attributes (stage `attributes`)

HAND_WRITTEN = "hand-written"  # provenance of descriptions no LLM wrote (tables say "hand-written attributes")


class UnknownMethodError(ValueError):
    """A method key that is not in :data:`METHODS`."""


class MissingAttributesError(ValueError):
    """``clip_fixed_attributes`` needs the attributes JSON ({label: [descriptions]}) and got none."""


def method_spec(name: str) -> MethodSpec:
    """The registry entry of ``name``; UnknownMethodError lists the known keys."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def run_dir(cfg: Config, name: str) -> Path:
    """Where a method's checkpoints and final weights live (``<data>/models/trained/<method>``)."""
    return DataLayout.of(cfg).run_dir(name)


def weights_path(cfg: Config, name: str) -> Path | None:
    """The trained weights a trainable method loads (``<run_dir>/final.safetensors``); None if untrained."""
    return run_dir(cfg, name) / "final.safetensors" if method_spec(name).trainable else None


def attributes_path(cfg: Config) -> Path:
    return DataLayout.of(cfg).attributes_file


def provenance_path(cfg: Config) -> Path:
    return DataLayout.of(cfg).attributes_provenance


def read_attributes(cfg: Config) -> dict[str, list[str]] | None:
    """The clean attributes JSON {label: [descriptions]} (fixed-attribute baseline), or None."""
    path = attributes_path(cfg)
    return json.loads(path.read_text()) if path.exists() else None


def read_attributes_provenance(cfg: Config) -> dict[str, Any] | None:
    """The attributes stage's ``provenance.json`` (provider, model, prompt, K, failures), or None."""
    path = provenance_path(cfg)
    return json.loads(path.read_text()) if path.is_file() else None


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file onto the CPU (no pickle involved; tensors written from a GPU load here too)."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def create_method(
    name: str,
    clip: ClipModel,
    cfg: Config | None = None,
    attributes: Mapping[str, Sequence[str]] | None = None,
    llm: LLMBackend | None = None,
) -> Method:
    """Build a method by key around ``clip`` (paper §4.2), untrained, on ``clip``'s device.

    Give each method its own ``ClipModel``: ``vificlip`` unlocks the CLIP it gets, the others keep
    it frozen (``VideoEncoder`` locks it).

    Args:
        name: a key of :data:`METHODS` (``ours_synth`` builds ``ours`` and keeps its own name).
        clip: the CLIP model (bootstrapped or real weights).
        cfg: the whole config (``llm``, ``label_encoder``, ``video_encoder``, ``baselines``).
        attributes: {label: [descriptions]} for ``clip_fixed_attributes``.
        llm: prebuilt LLM backend for ``ours*`` (default: ``create_llm(cfg.llm)``).

    Raises:
        UnknownMethodError: unknown key. MissingAttributesError: ``clip_fixed_attributes`` without
        attributes (None or an empty mapping).
    """
    from ovc.models.device import fp32_trainable

    # trainable parameters train in fp32 whatever ``clip.precision`` the frozen towers run in
    return fp32_trainable(_assemble(name, clip, cfg, attributes, llm))


def _assemble(
    name: str,
    clip: ClipModel,
    cfg: Config | None,
    attributes: Mapping[str, Sequence[str]] | None,
    llm: LLMBackend | None,
) -> Method:
    from ovc.models.baselines import (
        VIDEO_TEMPLATES,
        ContextPromptLabelEncoder,
        DualContextLabelEncoder,
        FixedAttributeLabelEncoder,
        FrameMeanVideoEncoder,
        Method,
        PromptLabelEncoder,
        unlock_clip,
    )
    from ovc.models.label_encoder import create_label_encoder
    from ovc.models.video_encoder import VideoEncoder

    spec = method_spec(name)
    cfg = cfg or Config()
    b = cfg.baselines
    kind = spec.builds
    if kind == "vificlip":
        unlock_clip(clip)
        return Method(name, PromptLabelEncoder(clip, [b.classname_template]), FrameMeanVideoEncoder(clip))
    temporal = kind in ("ours", "ours_no_reg")
    video_cfg = dataclasses.replace(cfg.video_encoder, use_temporal=temporal and cfg.video_encoder.use_temporal)
    if kind == "ours_no_reg":
        # §3.2 ablation: λ = 0 is "no regularisation" (α = 1 in training and at eval, see VideoEncoder);
        # eval_alpha cleared too, so a value tuned for `ours` cannot pull the ablation back towards CLIP
        video_cfg = dataclasses.replace(video_cfg, weight_reg_lambda=0.0, eval_alpha=None)
    video = VideoEncoder(clip, video_cfg)
    if kind in ("ours", "ours_no_temporal", "ours_no_reg"):
        return Method(name, create_label_encoder(cfg, clip, llm=llm), video)
    if kind == "clip_classname":
        return Method(name, PromptLabelEncoder(clip, [b.classname_template]), video)
    if kind == "clip_templates":
        return Method(name, PromptLabelEncoder(clip, VIDEO_TEMPLATES), video)
    if kind == "clip_fixed_attributes":
        if not attributes:  # None, or {} (an attributes file with no label): never a silent class-name copy
            raise MissingAttributesError(
                f"clip_fixed_attributes needs attributes {{label: [descriptions]}} (<data>/{ATTRIBUTES_FILE}, written by "
                "`ovc stage attributes`); got " + ("none" if attributes is None else "an empty mapping")
            )
        return Method(
            name, FixedAttributeLabelEncoder(clip, attributes, b.classname_template, b.attribute_template), video
        )
    if kind == "coop":
        return Method(name, ContextPromptLabelEncoder(clip, b.n_ctx, b.ctx_init), video)
    if kind == "dualcoop":
        return Method(name, DualContextLabelEncoder(clip, b.n_ctx, b.ctx_init), video, unit_norm_labels=False)
    raise UnknownMethodError(f"method {name!r} builds {kind!r}, which has no builder")  # a registry entry without code


def build_method(
    cfg: Config, name: str, attributes: Mapping[str, Sequence[str]] | None = None, device: Any = "cpu"
) -> Method:
    """A method by key around its own CLIP (the config's resolved weights) on ``device``, untrained.

    ``attributes`` default to the clean attributes JSON (only ``clip_fixed_attributes`` reads them).
    """
    from ovc.models.clip import create_clip
    from ovc.models.pretrained import resolve_clip_config

    if attributes is None and method_spec(name).builds == "clip_fixed_attributes":
        attributes = read_attributes(cfg)
        if attributes is None:
            raise MissingAttributesError(
                f"clip_fixed_attributes: {attributes_path(cfg)} not found; run `ovc stage attributes`"
            )
        if not attributes:
            raise MissingAttributesError(f"clip_fixed_attributes: {attributes_path(cfg)} holds no label")
    clip = create_clip(resolve_clip_config(cfg), device=device)
    return create_method(name, clip, cfg, attributes=attributes).to(device)


def load_method(
    cfg: Config, name: str, attributes: Mapping[str, Sequence[str]] | None = None, device: Any = "cpu"
) -> Method:
    """:func:`build_method` plus, for trained methods, their ``final.safetensors``; in eval mode.

    Raises:
        FileNotFoundError: a trainable method whose weights are missing (names the file and the stage).
    """
    method = build_method(cfg, name, attributes, device=device)
    weights = weights_path(cfg, name)
    if weights is not None:
        if not weights.exists():
            raise FileNotFoundError(f"{name}: trained weights {weights} not found; run `ovc stage train` first")
        method.load_state_dict_trainable(load_weights(weights))
    return method.eval()


def method_clip(method: Any) -> ClipModel:
    """The ClipModel inside a method (for its preprocessing constants)."""
    from ovc.models.clip import ClipModel

    for m in method.modules():
        if isinstance(m, ClipModel):
            return m
    raise ValueError(f"method {method.name} has no CLIP model")


def uses_frozen_trunk(method: Any) -> bool:
    """Whether a built method's video side is the frozen-trunk VideoEncoder (it can train from the cache)."""
    from ovc.models.video_encoder import VideoEncoder

    return isinstance(method.video_encoder, VideoEncoder)
