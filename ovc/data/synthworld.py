"""The synthetic video world: the offline default's ground truth (DESIGN.md "The offline default").

Procedurally rendered multi-label clips — a scene (background) and 1..``max_objects`` objects
(shape × colour), each doing one action — written as real H.264 mp4 (yuv420p) with PyAV and read
back later with decord. Everything is a pure function of ``(seed, split, index)``: the per-clip RNG
is derived from that triple, so parallel rendering is byte-for-byte the serial result.

World (see :class:`World`; :data:`WORLD` is the default instance):

- 6 scenes: beach, forest, night sky, desert, snow field, city (muted, textured backgrounds with
  per-clip jitter and static noise, so saturated objects stand out).
- 6 large, very distinct shapes (≈18-28 px at 64²; paper-scale CLIP towers struggle with small
  shapes, DESIGN.md): circle, square, triangle, star, cross, ring; 6 saturated colours: red, green,
  blue, yellow, purple, orange. Objects have a thin dark outline (visible on every background).
- 9 actions: moving left/right/up/down, rotating, growing, shrinking, blinking, still (+ the held-out
  diagonals "moving up left", "moving down right" of ``open_actions_related``). Rotation is
  never given to rotation-invariant shapes (circle, ring), where it would be invisible.

Labels (YouTube-8M-style vocabulary, ``vertical`` in parentheses):
shape "circle" (Shapes), colour "red" (Colours), coloured shape "red circle" (Objects), scene
"beach" (Scenes) — kind ``entity``; action "moving left" (Actions) and object-action combination
"circle moving left" (format ``"{shape} {action}"``, vertical "Object actions") — kind ``action``.
Noise labels that ``clean`` must drop: game titles (vertical "Games", ≈``game_title_rate`` of
train/val clips, attached regardless of content) and rare labels (vertical "Visual effects", on at
most :data:`RARE_MAX_CLIPS` train clips each, fewer than ``clean.min_count=5``).

Splits (the open-vocabulary tests mirror the paper's; held-out items are *never rendered* in
train/val, so no train/val video trains them as negatives by accident):

- ``train`` / ``val`` (vocab ``train``): closed vocabulary. No held-out entity (star, snow field),
  no held-out action (rotating, blinking), no reserved (shape, action) combination, no synonym.
- ``open_entities``: every clip shows a held-out entity (a star and/or a snow field); labels are
  entity labels; vocab = all entity labels incl. held-out ones. Held-out entities *do* appear in
  captions (the bootstrapped CLIP learns them from static frames, as real CLIP would have).
- ``open_actions``: every clip has an object doing a held-out action; labels are action labels;
  vocab = all 9 actions.
- ``open_rare`` (RareAct-like): every clip has an object doing a reserved (shape, action)
  combination never rendered in train/val; labels = shape, action and combination; vocab = train
  shapes, train actions and all their combinations.
- ``open_synonyms`` (§3.1, LLM knowledge reaches new words): clips like train, labelled with
  synonyms of entities *and* actions that CLIP's text tower never reads ("crimson circle", "disc",
  "seaside", "sliding left", "expanding", "motionless") *and* with their base words on the same
  videos; vocab = both. Its novel labels are the synonyms, its training labels the base words, so
  ``aupr_macro_novel / aupr_macro_known`` (evaluate's metrics) is the synonym-to-base-word ratio.
- ``open_temporal`` (§3.2, temporal modelling): every object moves left/right, up/down, grows or
  shrinks — pairs that are time-reversed twins with the same distribution of frames, so a mean
  over frames cannot tell them apart by construction; vocab = those 6 (training) actions.
- ``open_actions_related``: an object does a held-out action that training actions relate to
  through language and motion ("moving up left", "moving down right": diagonals of trained
  directions), reported apart from ``open_actions``'s unrelated ones (rotating, blinking: no
  training word relates to them — a stated hard case); vocab = train actions + the related ones.

Each clip has a static ``caption`` (objects, colours, scene — never a motion word; sometimes
partial: "a red object on a beach", "a star"). Every entity word, held-out ones included, is used
by some caption; synonyms never are. Every label has 2-4 short visual descriptions in plain words
(:meth:`World.attributes`), for the fixed-LLM-attribute baseline.

For the bootstrapped CLIP (single captioned frames, no mp4 needed) use :func:`sample_frame`.
"""

from __future__ import annotations

import math
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

SOURCE = "synthworld"
SPLITS = (
    "train",
    "val",
    "open_entities",
    "open_actions",
    "open_rare",
    "open_synonyms",
    "open_temporal",
    "open_actions_related",
)
OPEN_SPLITS = SPLITS[2:]
TRAIN_VOCAB = "train"  # train and val share the closed vocabulary
RARE_MAX_CLIPS = 3  # clips per rare label (< clean.min_count=5, so `clean` drops every one)
BASE_SIZE = 64  # geometry below is in pixels at 64x64 and scaled to other sizes
SUPERSAMPLE = 2  # object masks drawn at 2x and box-filtered down (anti-aliased edges)

# Words a static caption must never contain (motion belongs to the video labels only).
MOTION_WORDS = frozenset(
    "moving move moves left right up down rotating rotate rotates spinning spin growing grow grows "
    "shrinking shrink shrinks blinking blink blinks still static sliding turning rising sinking expanding "
    "contracting motionless diagonally".split()
)


class SynthWorldError(ValueError):
    """Bad synthetic-world request (unknown split, impossible sizes, ...); names the item."""


# --------------------------------------------------------------------------------------------------
# The world's ground truth
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """Ground-truth structure of the synthetic world (what exists, what is held out, synonyms).

    Later stages use it: the CLIP bootstrap for captions of every entity word, evaluation for the
    split design. All tuples are in a fixed order so vocabularies are deterministic.
    """

    scenes: tuple[str, ...] = ("beach", "forest", "night sky", "desert", "snow field", "city")
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
    colours: dict[str, tuple[int, int, int]] = field(
        default_factory=lambda: {
            "red": (225, 30, 35),
            "green": (35, 190, 50),
            "blue": (35, 75, 235),
            "yellow": (250, 225, 25),
            "purple": (155, 45, 210),
            "orange": (250, 135, 15),
        }
    )
    actions: tuple[str, ...] = (
        "moving left",
        "moving right",
        "moving up",
        "moving down",
        "rotating",
        "growing",
        "shrinking",
        "blinking",
        "still",
    )
    heldout_shapes: tuple[str, ...] = ("star",)  # open_entities only
    heldout_scenes: tuple[str, ...] = ("snow field",)  # open_entities only
    heldout_actions: tuple[str, ...] = (
        "rotating",
        "blinking",
    )  # open_actions only: no training word relates to them (the stated hard case)
    # held-out actions that training actions relate to through language (and motion): open_actions_related only
    related_actions: tuple[str, ...] = ("moving up left", "moving down right")
    # pairs a mean over frames cannot tell apart by construction (time-reversed twins): open_temporal
    temporal_pairs: tuple[tuple[str, str], ...] = (
        ("moving left", "moving right"),
        ("moving up", "moving down"),
        ("growing", "shrinking"),
    )
    rotation_invariant: tuple[str, ...] = ("circle", "ring")  # never "rotating" (invisible)
    # (shape, action) pairs never rendered in train/val; open_rare's unusual combinations.
    reserved_combos: tuple[tuple[str, str], ...] = (
        ("circle", "moving up"),
        ("square", "shrinking"),
        ("triangle", "growing"),
        ("cross", "moving left"),
        ("ring", "moving down"),
    )
    # plain word -> synonym the captions never use (open_synonyms); held-out words need none
    synonyms: dict[str, str] = field(
        default_factory=lambda: {
            "red": "crimson",
            "green": "emerald",
            "blue": "azure",
            "yellow": "golden",
            "purple": "violet",
            "orange": "tangerine",
            "circle": "disc",
            "square": "box",
            "triangle": "wedge",
            "cross": "plus sign",
            "ring": "hoop",
            "beach": "seaside",
            "forest": "woodland",
            "night sky": "nighttime",
            "desert": "dunes",
            "city": "downtown",
            # actions: CLIP's text tower never reads a motion word (static captions), MiniLM knows these
            "moving left": "sliding left",
            "moving right": "sliding right",
            "moving up": "rising",
            "moving down": "sinking",
            "growing": "expanding",
            "shrinking": "contracting",
            "still": "motionless",
        }
    )
    game_titles: tuple[str, ...] = (
        "Shape Quest II",
        "Polygon Wars",
        "Circle Dash Deluxe",
        "Geometry Legends",
        "Pixel Kart 64",
    )
    rare_labels: tuple[str, ...] = (
        "lens flare",
        "film grain",
        "vignette",
        "chromatic aberration",
        "scan lines",
        "pixel glitch",
    )

    # ---- derived sets ------------------------------------------------------------------------
    @property
    def train_shapes(self) -> tuple[str, ...]:
        return tuple(s for s in self.shapes if s not in self.heldout_shapes)

    @property
    def train_scenes(self) -> tuple[str, ...]:
        return tuple(s for s in self.scenes if s not in self.heldout_scenes)

    @property
    def train_actions(self) -> tuple[str, ...]:
        return tuple(a for a in self.actions if a not in self.heldout_actions)

    @property
    def temporal_actions(self) -> tuple[str, ...]:
        return tuple(a for pair in self.temporal_pairs for a in pair)

    @property
    def colour_names(self) -> tuple[str, ...]:
        return tuple(self.colours)

    def entity_words(self) -> tuple[str, ...]:
        """Every entity word (scenes, shapes, colours), held-out ones included: the captions' words."""
        return (*self.scenes, *self.shapes, *self.colours)

    @staticmethod
    def coloured(colour: str, shape: str) -> str:
        """Coloured-shape label, e.g. ``"red circle"``."""
        return f"{colour} {shape}"

    @staticmethod
    def combo(shape: str, action: str) -> str:
        """Object-action combination label, e.g. ``"circle moving left"`` (RareAct-like)."""
        return f"{shape} {action}"

    def allowed_actions(self, shape: str, actions: Sequence[str]) -> tuple[str, ...]:
        """``actions`` minus those invisible for ``shape`` (rotation of circle/ring)."""
        return tuple(a for a in actions if not (a == "rotating" and shape in self.rotation_invariant))

    def train_actions_for(self, shape: str) -> tuple[str, ...]:
        """Actions a train/val object of ``shape`` may do (reserved combinations excluded)."""
        reserved = set(self.reserved_combos)
        return tuple(a for a in self.allowed_actions(shape, self.train_actions) if (shape, a) not in reserved)

    # ---- vocabularies ------------------------------------------------------------------------
    def vocabulary(self) -> list[dict[str, str]]:
        """Rows ``{label, vertical, kind, vocab}`` of every split's vocabulary (train and val share
        ``train``), in a fixed order."""
        rows: list[dict[str, str]] = []

        def add(vocab: str, labels: Sequence[str], vertical: str, kind: str) -> None:
            rows.extend({"label": lab, "vertical": vertical, "kind": kind, "vocab": vocab} for lab in labels)

        ts, cs = self.train_shapes, self.colour_names
        reserved = set(self.reserved_combos)
        add(TRAIN_VOCAB, ts, "Shapes", "entity")
        add(TRAIN_VOCAB, cs, "Colours", "entity")
        add(TRAIN_VOCAB, [self.coloured(c, s) for s in ts for c in cs], "Objects", "entity")
        add(TRAIN_VOCAB, self.train_scenes, "Scenes", "entity")
        add(TRAIN_VOCAB, self.train_actions, "Actions", "action")
        add(
            TRAIN_VOCAB,
            [self.combo(s, a) for s in ts for a in self.train_actions if (s, a) not in reserved],
            "Object actions",
            "action",
        )
        add(TRAIN_VOCAB, self.game_titles, "Games", "entity")
        add(TRAIN_VOCAB, self.rare_labels, "Visual effects", "entity")

        add("open_entities", self.shapes, "Shapes", "entity")
        add("open_entities", cs, "Colours", "entity")
        add("open_entities", [self.coloured(c, s) for s in self.shapes for c in cs], "Objects", "entity")
        add("open_entities", self.scenes, "Scenes", "entity")

        add("open_actions", self.actions, "Actions", "action")

        add("open_rare", ts, "Shapes", "entity")
        add("open_rare", self.train_actions, "Actions", "action")
        add("open_rare", [self.combo(s, a) for s in ts for a in self.train_actions], "Object actions", "action")

        syn = self.synonyms
        add("open_synonyms", [syn[s] for s in ts], "Shapes", "entity")
        add("open_synonyms", [syn[c] for c in cs], "Colours", "entity")
        add("open_synonyms", [self.coloured(syn[c], s) for s in ts for c in cs], "Objects", "entity")
        add("open_synonyms", [syn[s] for s in self.train_scenes], "Scenes", "entity")
        add("open_synonyms", [syn[a] for a in self.train_actions], "Actions", "action")
        # the base words on the same videos: AUPR(synonyms) / AUPR(base words) is §3.1's claim
        add("open_synonyms", ts, "Shapes", "entity")
        add("open_synonyms", cs, "Colours", "entity")
        add("open_synonyms", [self.coloured(c, s) for s in ts for c in cs], "Objects", "entity")
        add("open_synonyms", self.train_scenes, "Scenes", "entity")
        add("open_synonyms", self.train_actions, "Actions", "action")

        add("open_temporal", self.temporal_actions, "Actions", "action")

        add("open_actions_related", (*self.train_actions, *self.related_actions), "Actions", "action")
        return rows

    def attributes(self) -> dict[str, list[str]]:
        """``{label: [2-4 short visual descriptions]}`` for every label of every vocabulary, as an LLM
        would write them. Synonym labels are described in plain words (the baseline's CLIP knows
        only those)."""
        plain = {v: k for k, v in self.synonyms.items()}
        out: dict[str, list[str]] = {}
        for row in self.vocabulary():
            label = row["label"]
            if label not in out:
                out[label] = self._describe(label, row["vertical"], plain)
        return out

    def _describe(self, label: str, vertical: str, plain: dict[str, str]) -> list[str]:
        if vertical == "Games":
            return ["a video game screen", "colourful game graphics", "a game title logo"]
        if vertical == "Visual effects":
            return list(_EFFECT_DESCRIPTIONS[label])
        if vertical == "Object actions":
            shape = next(s for s in self.shapes if label.startswith(s + " "))
            action = label[len(shape) + 1 :]
            return [_SHAPE_DESCRIPTIONS[shape][0], _ACTION_DESCRIPTIONS[action][0], f"a {shape} that is {action}"]
        if vertical == "Objects":
            colour, shape = label.split(" ", 1)
            colour, shape = plain.get(colour, colour), plain.get(shape, shape)
            return [_SHAPE_DESCRIPTIONS[shape][0], _COLOUR_DESCRIPTIONS[colour][0], f"{_a(colour)} {colour} {shape}"]
        word = plain.get(label, label)
        for table in (_SHAPE_DESCRIPTIONS, _COLOUR_DESCRIPTIONS, _SCENE_DESCRIPTIONS, _ACTION_DESCRIPTIONS):
            if word in table:
                return list(table[word])
        raise SynthWorldError(f"no description for label {label!r}")


_SHAPE_DESCRIPTIONS = {
    "circle": ("a round shape", "a smooth curved outline without corners", "a filled round form"),
    "square": ("a shape with four equal sides", "four right-angled corners", "a blocky four-sided form"),
    "triangle": ("a shape with three pointed corners", "three straight sides", "a pointed top"),
    "star": ("a shape with five pointed tips", "spiky points around a centre", "a star-shaped form"),
    "cross": ("a plus-shaped figure", "two bars crossing at right angles", "four short arms"),
    "ring": ("a round band with a hole in the middle", "a thick circular outline", "an empty centre"),
}
_COLOUR_DESCRIPTIONS = {
    "red": ("a deep red colour", "a bright red surface"),
    "green": ("a vivid green colour", "a grass-green surface"),
    "blue": ("a strong blue colour", "a deep blue surface"),
    "yellow": ("a bright yellow colour", "a lemon-yellow surface"),
    "purple": ("a rich purple colour", "a purple surface"),
    "orange": ("a bright orange colour", "an orange surface"),
}
_SCENE_DESCRIPTIONS = {
    "beach": ("pale yellow sand below a blue sea", "a sandy shore by the water", "light blue sky above the sea"),
    "forest": ("dark green trees", "brown tree trunks", "a green leafy background"),
    "night sky": ("a dark sky with small white dots", "a nearly black background", "tiny points of light"),
    "desert": ("orange sandy hills", "wavy bands of sand", "a pale hot sky"),
    "snow field": ("white snowy ground", "a pale cold landscape", "a grey-blue sky over snow"),
    "city": ("grey buildings with windows", "rectangular blocks of houses", "a street skyline"),
}
_ACTION_DESCRIPTIONS = {
    "moving up left": (
        "an object drifting diagonally to the upper left",
        "motion towards the top-left corner",
        "a shape travelling up and to the left",
    ),
    "moving down right": (
        "an object drifting diagonally to the lower right",
        "motion towards the bottom-right corner",
        "a shape travelling down and to the right",
    ),
    "moving left": ("an object heading to the left side", "motion from right to left", "a shape travelling leftwards"),
    "moving right": (
        "an object heading to the right side",
        "motion from left to right",
        "a shape travelling rightwards",
    ),
    "moving up": ("an object climbing towards the top", "motion from bottom to top", "a shape travelling upwards"),
    "moving down": (
        "an object falling towards the bottom",
        "motion from top to bottom",
        "a shape travelling downwards",
    ),
    "rotating": ("an object turning around its centre", "a shape spinning in place", "corners changing direction"),
    "growing": ("an object getting bigger", "a shape increasing in size", "a shape that swells"),
    "shrinking": ("an object getting smaller", "a shape decreasing in size", "a shape that dwindles"),
    "blinking": ("an object flashing on and off", "a shape appearing and disappearing", "a flickering shape"),
    "still": ("an object that does not move", "a shape resting in place", "a shape that stays in one place"),
}
_EFFECT_DESCRIPTIONS = {
    "lens flare": ("bright streaks of light", "a glare from the camera lens"),
    "film grain": ("fine speckled noise", "a grainy texture over the image"),
    "vignette": ("darkened corners", "a bright centre fading to dark edges"),
    "chromatic aberration": ("coloured fringes around edges", "red and blue halos"),
    "scan lines": ("thin horizontal lines", "a striped screen texture"),
    "pixel glitch": ("blocky corrupted pixels", "broken colourful squares"),
}

WORLD = World()

_SCENE_PREPOSITION = {
    "beach": "on",
    "forest": "in",
    "night sky": "under",
    "desert": "in",
    "snow field": "on",
    "city": "in",
}


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# --------------------------------------------------------------------------------------------------
# Clip specifications (pure data: everything the renderer needs)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectSpec:
    """One object's appearance and motion, in pixels of the clip's frame size."""

    shape: str
    colour: str
    action: str
    rgb: tuple[int, int, int]  # jittered colour actually drawn
    x: float  # start centre, pixels
    y: float
    radius: float  # base radius, pixels (≈ half the object's size)
    angle: float  # start rotation, degrees
    travel: float = 0.0  # total displacement (moving *), pixels
    spin: float = 0.0  # degrees per frame (rotating)
    phase: int = 0  # blink phase in frames (blinking)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip and write its manifest row."""

    video_id: str
    split: str
    index: int
    scene: str
    objects: tuple[ObjectSpec, ...]
    noise_seed: int  # background texture/noise RNG seed
    size: int
    num_frames: int
    caption: str
    labels: tuple[str, ...]


def _split_code(split: str) -> int:
    """Stable integer for a split name (RNG stream id), independent of Python's hash salt."""
    return zlib.crc32(split.encode()) & 0x7FFFFFFF


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Per-clip RNG derived from (seed, split, index): parallel rendering gives the serial result."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _split_code(split), int(index)]))


def split_rng(seed: int, split: str) -> np.random.Generator:
    """Per-split RNG (split-level choices: which clips get game titles / rare labels)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _split_code(split), 2**31 - 1, 7]))


def _make_object(
    rng: np.random.Generator,
    world: World,
    shape: str,
    colour: str,
    action: str,
    size: int,
    others: Sequence[ObjectSpec] = (),
    full_rotation: bool = False,
) -> ObjectSpec:
    """Sample one object's geometry so its whole trajectory stays (mostly) in frame."""
    k = size / BASE_SIZE
    radius = float(rng.uniform(9.0, 14.0)) * k
    # growing/shrinking reach 1.3x the base radius; keep that inside the frame too
    reach = radius * (1.3 if action in ("growing", "shrinking") else 1.0)
    travel = float(rng.uniform(0.33, 0.45)) * size if action.startswith("moving") else 0.0
    lo, hi = reach + 1.0, size - reach - 1.0
    best: tuple[float, float] | None = None
    for _ in range(20):  # rejection-sample a start away from the other objects
        x, y = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
        if action == "moving left":
            x = float(rng.uniform(min(lo + travel, hi), hi))
        elif action == "moving right":
            x = float(rng.uniform(lo, max(hi - travel, lo)))
        elif action == "moving up":
            y = float(rng.uniform(min(lo + travel, hi), hi))
        elif action == "moving down":
            y = float(rng.uniform(lo, max(hi - travel, lo)))
        elif action in ("moving up left", "moving down right"):  # travel/√2 on each axis
            d = travel / math.sqrt(2)
            if action == "moving up left":
                x, y = float(rng.uniform(min(lo + d, hi), hi)), float(rng.uniform(min(lo + d, hi), hi))
            else:
                x, y = float(rng.uniform(lo, max(hi - d, lo))), float(rng.uniform(lo, max(hi - d, lo)))
        best = (x, y)
        if all(math.hypot(x - o.x, y - o.y) >= 0.9 * (radius + o.radius) for o in others):
            break
    assert best is not None
    jitter = rng.integers(-14, 15, size=3)
    rgb = tuple(int(v) for v in np.clip(np.array(world.colours[colour]) + jitter, 0, 255))
    angle = float(rng.uniform(0, 360)) if full_rotation else float(rng.uniform(-15, 15))
    spin = 0.0
    if action == "rotating":
        spin = float(rng.uniform(12.0, 18.0)) * (1 if rng.random() < 0.5 else -1)
    return ObjectSpec(
        shape=shape,
        colour=colour,
        action=action,
        rgb=rgb,  # type: ignore[arg-type]
        x=best[0],
        y=best[1],
        radius=radius,
        angle=angle,
        travel=travel,
        spin=spin,
        phase=int(rng.integers(0, 4)),
    )


def make_caption(rng: np.random.Generator, scene: str | None, objects: Sequence[tuple[str, str]]) -> str:
    """A static caption of a scene and (colour, shape) objects — never a motion word.

    Mostly full ("a red circle and a blue square on a beach"); sometimes partial: colour only ("a
    red object"), shape only ("a star"), one of several objects, the scene alone or objects alone —
    partial captions make literal zero-shot prompts work for the bootstrapped CLIP (DESIGN.md).
    """
    phrases = []
    objs = list(objects)
    if len(objs) > 1 and rng.random() < 0.15:
        objs = [objs[int(rng.integers(len(objs)))]]
    for colour, shape in objs:
        r = rng.random()
        if r < 0.7:
            phrases.append(f"{_a(colour)} {colour} {shape}")
        elif r < 0.85:
            phrases.append(f"{_a(shape)} {shape}")
        else:
            phrases.append(f"{_a(colour)} {colour} {'object' if rng.random() < 0.5 else 'shape'}")
    obj_text = " and ".join(phrases)
    r = rng.random()
    if scene is None or (obj_text and r < 0.1):
        return obj_text if rng.random() < 0.7 else f"a picture of {obj_text}"
    scene_a = f"{_a(scene)} {scene}"
    if not obj_text or r < 0.18:
        return scene_a if rng.random() < 0.6 else f"a picture of {scene_a}"
    prep = _SCENE_PREPOSITION[scene]
    t = int(rng.integers(4))
    if t == 0:
        return f"{obj_text} {prep} {scene_a}"
    if t == 1:
        return f"{scene_a} with {obj_text}"
    if t == 2:
        return f"a picture of {obj_text} {prep} {scene_a}"
    return f"{obj_text} in front of {scene_a} background"


def _plan_content(
    rng: np.random.Generator,
    world: World,
    split: str,
    max_objects: int,
) -> tuple[str, list[tuple[str, str, str]]]:
    """Choose the scene and (shape, colour, action) of each object for one clip of ``split``."""
    n_obj = int(rng.integers(1, max_objects + 1))
    colours = world.colour_names
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    scene = pick(world.train_scenes)
    objs: list[tuple[str, str, str]] = []
    first: tuple[str, str] | None = None  # forced (shape, action) of object 0
    shapes_pool = world.train_shapes
    if split == "open_entities":
        kind = int(rng.integers(3))  # 0: star object, 1: snow field scene, 2: both
        if kind in (1, 2):
            scene = pick(world.heldout_scenes)
        shapes_pool = world.shapes
        if kind in (0, 2):
            first = (pick(world.heldout_shapes), "")
    elif split == "open_actions":
        action = pick(world.heldout_actions)
        shapes = [s for s in world.train_shapes if action in world.allowed_actions(s, world.actions)]
        first = (pick(shapes), action)
    elif split == "open_rare":
        first = world.reserved_combos[int(rng.integers(len(world.reserved_combos)))]
    elif split == "open_actions_related":
        first = (pick(world.train_shapes), pick(world.related_actions))
    seen: set[tuple[str, str]] = set()
    for i in range(n_obj):
        for _ in range(50):  # distinct (shape, colour) per clip
            shape = first[0] if (i == 0 and first) else pick(shapes_pool)
            colour = pick(colours)
            if (shape, colour) not in seen:
                break
        seen.add((shape, colour))
        if i == 0 and first and first[1]:
            action = first[1]
        elif split == "open_actions":
            action = pick(world.allowed_actions(shape, world.actions))
        elif split == "open_rare":
            action = pick(world.allowed_actions(shape, world.train_actions))
        elif (
            split == "open_temporal"
        ):  # every shape does every one of them (reserved combos too): the twins stay symmetric
            action = pick(world.temporal_actions)
        else:  # train, val, open_entities, open_synonyms: closed actions, no reserved combination
            action = pick(world.train_actions_for(shape))
        objs.append((shape, colour, action))
    return scene, objs


def _labels(world: World, split: str, scene: str, objs: Sequence[tuple[str, str, str]]) -> list[str]:
    """A clip's labels for its split's vocabulary (order: scene, then per object; duplicates removed)."""
    out: list[str] = []
    syn = world.synonyms
    if split in ("train", "val", "open_entities"):
        out.append(scene)
        for shape, colour, action in objs:
            out += [shape, colour, world.coloured(colour, shape)]
            if split != "open_entities":
                out += [action, world.combo(shape, action)]
    elif split == "open_actions":
        out += [a for _, _, a in objs]
    elif split == "open_rare":
        for shape, _, action in objs:
            out += [shape, action, world.combo(shape, action)]
    elif split == "open_synonyms":
        out += [syn[scene], scene]
        for shape, colour, action in objs:
            out += [syn[shape], syn[colour], world.coloured(syn[colour], shape), syn[action]]
            out += [shape, colour, world.coloured(colour, shape), action]  # base words, same videos
    elif split in ("open_temporal", "open_actions_related"):
        out += [a for _, _, a in objs]
    return list(dict.fromkeys(out))


def make_clip_spec(
    world: World,
    split: str,
    index: int,
    *,
    seed: int,
    size: int = 64,
    num_frames: int = 16,
    max_objects: int = 2,
) -> ClipSpec:
    """The spec of clip ``index`` of ``split`` — a pure function of its arguments.

    Args:
        world: the world definition (usually :data:`WORLD`).
        split: one of :data:`SPLITS`.
        index: clip number within the split.
        seed: master seed (``cfg.world.seed``).
        size: frame height = width, pixels.
        num_frames: frames per clip.
        max_objects: objects per clip are drawn from 1..max_objects.
    """
    if split not in SPLITS:
        raise SynthWorldError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if size < 32 or size % 2:
        raise SynthWorldError(f"frame size {size} must be even and >= 32 (yuv420p, object sizes)")
    if num_frames < 2 or max_objects < 1:
        raise SynthWorldError(f"num_frames={num_frames} must be >= 2 and max_objects={max_objects} >= 1")
    rng = clip_rng(seed, split, index)
    scene, planned = _plan_content(rng, world, split, max_objects)
    objects: list[ObjectSpec] = []
    for shape, colour, action in planned:
        objects.append(_make_object(rng, world, shape, colour, action, size, objects))
    caption = make_caption(rng, scene, [(c, s) for s, c, _ in planned])
    return ClipSpec(
        video_id=f"{split}_{index:06d}",
        split=split,
        index=index,
        scene=scene,
        objects=tuple(objects),
        noise_seed=int(rng.integers(2**31)),
        size=size,
        num_frames=num_frames,
        caption=caption,
        labels=tuple(_labels(world, split, scene, planned)),
    )


def plan_split(
    world: World,
    split: str,
    n: int,
    *,
    seed: int,
    size: int = 64,
    num_frames: int = 16,
    max_objects: int = 2,
    game_title_rate: float = 0.0,
    rare_label_rate: float = 0.0,
) -> list[ClipSpec]:
    """Specs of the ``n`` clips of ``split``, plus the noise labels ``clean`` must drop.

    Game titles go to ``round(game_title_rate * n)`` train/val clips (at least one when the rate is
    positive), chosen by the split RNG regardless of content; rare labels go to
    ``round(rare_label_rate * n)`` train clips (at least one), at most :data:`RARE_MAX_CLIPS` per
    rare label, so each stays under ``clean.min_count``.
    """
    specs = [
        make_clip_spec(world, split, i, seed=seed, size=size, num_frames=num_frames, max_objects=max_objects)
        for i in range(n)
    ]
    if split not in ("train", "val") or n == 0:
        return specs
    rng = split_rng(seed, split)
    extra: dict[int, list[str]] = {}
    if game_title_rate > 0:
        k = min(n, max(1, round(game_title_rate * n)))
        for i in rng.choice(n, size=k, replace=False):
            extra.setdefault(int(i), []).append(world.game_titles[int(rng.integers(len(world.game_titles)))])
    if split == "train" and rare_label_rate > 0:
        k = min(n, max(1, round(rare_label_rate * n)), RARE_MAX_CLIPS * len(world.rare_labels))
        for j, i in enumerate(rng.choice(n, size=k, replace=False)):
            extra.setdefault(int(i), []).append(world.rare_labels[j // RARE_MAX_CLIPS])
    for i, labels in extra.items():
        s = specs[i]
        specs[i] = ClipSpec(**{**s.__dict__, "labels": tuple(dict.fromkeys((*s.labels, *labels)))})
    return specs


# --------------------------------------------------------------------------------------------------
# Rendering (numpy + PIL)
# --------------------------------------------------------------------------------------------------
def _polygon(n: int, r: float, start_deg: float = -90.0) -> np.ndarray:
    a = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star(points: int = 5, outer: float = 1.25, inner: float = 0.5) -> np.ndarray:
    a = np.deg2rad(-90.0 + 180.0 * np.arange(2 * points) / points)
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(w: float = 0.36, l: float = 1.05) -> np.ndarray:  # noqa: E741 - arm length
    return np.array(
        [
            (-w, -l),
            (w, -l),
            (w, -w),
            (l, -w),
            (l, w),
            (w, w),
            (w, l),
            (-w, l),
            (-w, w),
            (-l, w),
            (-l, -w),
            (-w, -w),
        ]
    )


# Unit outlines (radius ≈ 1, roughly equal areas); each shape = list of (polygon, filled?) rings.
_SHAPE_POLYS: dict[str, list[tuple[np.ndarray, bool]]] = {
    "circle": [(_polygon(40, 1.0), True)],
    "square": [(np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]), True)],
    "triangle": [(_polygon(3, 1.3) + np.array([0.0, 0.12]), True)],
    "star": [(_star(), True)],
    "cross": [(_cross(), True)],
    "ring": [(_polygon(40, 1.05), True), (_polygon(40, 0.55), False)],
}
_OUTLINE_RGB = np.array([25, 25, 30], np.float32)


def object_state(obj: ObjectSpec, t: int, num_frames: int) -> tuple[float, float, float, float, bool]:
    """(x, y, radius, angle, visible) of ``obj`` at frame ``t`` (its action applied)."""
    u = t / max(num_frames - 1, 1)
    x, y, r, ang = obj.x, obj.y, obj.radius, obj.angle
    a = obj.action
    if a == "moving left":
        x -= obj.travel * u
    elif a == "moving right":
        x += obj.travel * u
    elif a == "moving up":
        y -= obj.travel * u
    elif a == "moving down":
        y += obj.travel * u
    elif a == "moving up left":
        x -= obj.travel * u / math.sqrt(2)
        y -= obj.travel * u / math.sqrt(2)
    elif a == "moving down right":
        x += obj.travel * u / math.sqrt(2)
        y += obj.travel * u / math.sqrt(2)
    elif a == "rotating":
        ang += obj.spin * t
    elif a == "growing":
        r *= 0.55 + 0.75 * u
    elif a == "shrinking":
        r *= 1.3 - 0.75 * u
    visible = not (a == "blinking" and ((t + obj.phase) // 2) % 2 == 1)  # 2 frames on, 2 off
    return x, y, r, ang, visible


def _object_masks(
    shape: str,
    x: float,
    y: float,
    r: float,
    angle: float,
    size: int,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Anti-aliased alpha masks in [0, 1] of one object, drawn only over its bounding box.

    Returns:
        ``((rows, cols), fill, fill_plus_outline)`` with both masks (h, w) float32 for the frame
        crop ``frame[rows, cols]``, or None when the object is entirely outside the frame.
    """
    ss = SUPERSAMPLE
    th = math.radians(angle)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    rings = [(poly @ rot.T * r + np.array([x, y]), filled) for poly, filled in _SHAPE_POLYS[shape]]  # (V, 2) px
    pts = np.concatenate([p for p, _ in rings])
    x0, y0 = (max(int(math.floor(v)) - 2, 0) for v in pts.min(axis=0))
    x1, y1 = (min(int(math.ceil(v)) + 2, size) for v in pts.max(axis=0))
    if x1 <= x0 or y1 <= y0:
        return None
    img = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    draw = ImageDraw.Draw(img)
    for p, filled in rings:
        local = (p - np.array([x0, y0])) * ss  # crop-relative, supersampled pixels
        draw.polygon([tuple(q) for q in local.tolist()], fill=255 if filled else 0)
    fill = np.asarray(img.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), np.float32) / 255.0
    return (slice(y0, y1), slice(x0, x1)), fill, _dilate3(fill)


def _dilate3(mask: np.ndarray) -> np.ndarray:
    """3x3 grey dilation (separable max) of a (S, S) mask: the fill grown by one pixel = the outline."""
    p = np.pad(mask, 1)  # (S+2, S+2)
    h = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])  # (S+2, S)
    return np.maximum(np.maximum(h[:-2], h[1:-1]), h[2:])  # (S, S)


def _vgrad(s: int, top: Sequence[float], bottom: Sequence[float]) -> np.ndarray:
    u = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]  # (S, 1, 1)
    img = (1 - u) * np.asarray(top, np.float32) + u * np.asarray(bottom, np.float32)  # (S, 1, 3)
    return np.repeat(img, s, axis=1)  # (S, 1, 3) -> (S, S, 3)


def _bg_beach(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _vgrad(s, (150, 195, 235), (185, 220, 245))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    horizon = 0.25 + rng.uniform(-0.04, 0.04)
    shore = 0.55 + rng.uniform(-0.05, 0.05) + 0.025 * np.sin(2 * np.pi * (xx * rng.uniform(1, 2.5) + rng.random()))
    sea = (yy >= horizon) & (yy < shore)
    img[sea] = (35, 105, 165) + (yy[sea, None] - horizon) * np.array([40, 60, 40])
    waves = sea & (np.sin(2 * np.pi * (yy * 9 + 0.3 * np.sin(2 * np.pi * xx * 2 + rng.random() * 6))) > 0.85)
    img[waves] = (150, 200, 225)
    sand = yy >= shore
    img[sand] = (225, 205, 155)
    foam = (yy >= shore) & (yy < shore + 0.03)
    img[foam] = (235, 235, 225)
    return img


def _bg_forest(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _vgrad(s, (40, 90, 40), (22, 55, 25))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for _ in range(int(rng.integers(5, 9))):  # canopy blobs
        cx, cy, rr = rng.uniform(0, s), rng.uniform(0, 0.45 * s), rng.uniform(0.08, 0.18) * s
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < rr**2] = (50, 115, 45) + rng.integers(-10, 10, 3)
    for _ in range(int(rng.integers(4, 7))):  # trunks
        x0, w = rng.uniform(0, s), rng.uniform(0.03, 0.06) * s
        top = rng.uniform(0.25, 0.45) * s
        img[(xx >= x0) & (xx < x0 + w) & (yy >= top)] = (85, 55, 30) + rng.integers(-8, 8, 3)
    img[yy >= 0.88 * s] = (60, 72, 32)
    return img


def _bg_night_sky(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _vgrad(s, (6, 8, 28), (26, 26, 62))
    for _ in range(int(rng.integers(20, 36))):  # tiny 1 px points of light
        i, j = int(rng.integers(0, int(0.8 * s))), int(rng.integers(0, s))
        img[i, j] = np.array([230, 230, 200]) * rng.uniform(0.6, 1.0)
    xx = np.arange(s, dtype=np.float32) / s
    hill = (0.88 + 0.05 * np.sin(2 * np.pi * (xx * rng.uniform(1, 2) + rng.random()))) * s
    img[np.arange(s)[:, None] >= hill[None, :]] = (8, 8, 14)
    return img


def _bg_desert(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _vgrad(s, (245, 232, 195), (235, 215, 170))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    sky = 0.25 + rng.uniform(-0.05, 0.05) + 0.04 * np.sin(2 * np.pi * (xx * 1.3 + rng.random()))
    sand = yy >= sky
    img[sand] = (215, 160, 90)
    band = sand & (np.sin(2 * np.pi * (yy * 5 + 0.25 * np.sin(2 * np.pi * (xx * 1.5 + rng.random())))) > 0.55)
    img[band] = (180, 125, 65)
    return img


def _bg_snow_field(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _vgrad(s, (185, 200, 222), (210, 220, 235))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    line = 0.35 + rng.uniform(-0.05, 0.05) + 0.03 * np.sin(2 * np.pi * (xx * 1.2 + rng.random()))
    snow = yy >= line
    img[snow] = (244, 247, 252)
    shadow = snow & (np.sin(2 * np.pi * (yy * 4 + 0.3 * xx + rng.random())) > 0.75)
    img[shadow] = (212, 222, 238)
    return img


def _bg_city(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _vgrad(s, (150, 172, 195), (185, 195, 205))
    x = 0
    while x < s:
        w = min(int(rng.integers(max(4, s // 12), max(6, s // 5))), s - x)
        top = int(rng.uniform(0.2, 0.6) * s)
        grey = float(rng.uniform(70, 130))
        img[top:, x : x + w] = (grey, grey, grey + 6)
        wins = rng.random((s, w)) < 0.45  # lit windows on a 3-px grid
        grid = np.zeros((s, w), bool)
        grid[top + 2 :: 3, 1::3] = True
        img[:, x : x + w][wins & grid] = (225, 215, 150)
        x += w + int(rng.integers(0, 2))
    img[int(0.92 * s) :] = (50, 50, 56)
    return img


_BACKGROUNDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "beach": _bg_beach,
    "forest": _bg_forest,
    "night sky": _bg_night_sky,
    "desert": _bg_desert,
    "snow field": _bg_snow_field,
    "city": _bg_city,
}


def render_background(scene: str, noise_seed: int, size: int) -> np.ndarray:
    """The scene's background with per-clip jitter (layout, brightness, tint, static noise); (S, S, 3) float32."""
    if scene not in _BACKGROUNDS:
        raise SynthWorldError(f"unknown scene {scene!r}; known: {', '.join(_BACKGROUNDS)}")
    rng = np.random.default_rng(noise_seed)
    img = _BACKGROUNDS[scene](rng, size)
    img = img * rng.uniform(0.92, 1.08) + rng.uniform(-8, 8, size=3)
    img += rng.normal(0.0, 3.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.float32)


def _composite(frame: np.ndarray, objects: Sequence[ObjectSpec], t: int, num_frames: int) -> np.ndarray:
    size = frame.shape[0]
    for obj in objects:
        x, y, r, ang, visible = object_state(obj, t, num_frames)
        if not visible:
            continue
        masks = _object_masks(obj.shape, x, y, r, ang, size)
        if masks is None:
            continue
        box, fill, full = masks
        crop = frame[box]  # (h, w, 3) view; the crop has a 2 px margin, so dilation is exact
        crop = crop * (1 - full[..., None]) + _OUTLINE_RGB * full[..., None]
        frame[box] = crop * (1 - fill[..., None]) + np.asarray(obj.rgb, np.float32) * fill[..., None]
    return frame


def render_frame(spec: ClipSpec, t: int, background: np.ndarray | None = None) -> np.ndarray:
    """Frame ``t`` of a clip as (S, S, 3) uint8 RGB, without any video encoding.

    Args:
        spec: the clip.
        t: frame index in ``0..spec.num_frames-1``.
        background: the clip's :func:`render_background` (pass it to avoid recomputing).
    """
    if background is None:
        background = render_background(spec.scene, spec.noise_seed, spec.size)
    frame = _composite(background.copy(), spec.objects, t, spec.num_frames)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def render_clip(spec: ClipSpec) -> np.ndarray:
    """All frames of a clip, (T, S, S, 3) uint8 RGB."""
    bg = render_background(spec.scene, spec.noise_seed, spec.size)
    return np.stack([render_frame(spec, t, bg) for t in range(spec.num_frames)])


class FrameSample(NamedTuple):
    image: np.ndarray  # (S, S, 3) uint8 RGB
    caption: str  # static caption (entity words only)
    spec: ClipSpec  # the clip the frame was taken from (scene, objects)


def sample_frame(
    rng: np.random.Generator,
    *,
    world: World = WORLD,
    size: int = 64,
    max_objects: int = 2,
    include_heldout: bool = True,
    num_frames: int = 16,
) -> FrameSample:
    """One captioned still frame for the bootstrapped CLIP (no mp4 involved, ≈1 ms).

    Draws a scene and objects from the *whole* entity space (held-out star / snow field included
    when ``include_heldout``: captions must teach every entity word, DESIGN.md), any pose (any
    rotation angle, any point of a motion), and a static caption. Objects are always visible.

    Args:
        rng: the caller's generator (e.g. ``np.random.default_rng(seed)``).
        world: world definition.
        size: frame size in pixels.
        max_objects: 1..max_objects objects.
        include_heldout: also draw held-out entities.
        num_frames: clip length the pose is taken from.
    """
    scenes = world.scenes if include_heldout else world.train_scenes
    shapes = world.shapes if include_heldout else world.train_shapes
    actions = tuple(a for a in world.actions if a != "blinking")
    scene = scenes[int(rng.integers(len(scenes)))]
    n_obj = int(rng.integers(1, max_objects + 1))
    objects: list[ObjectSpec] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(n_obj):
        for _ in range(50):
            shape = shapes[int(rng.integers(len(shapes)))]
            colour = world.colour_names[int(rng.integers(len(world.colours)))]
            if (shape, colour) not in seen:
                break
        seen.add((shape, colour))
        action = actions[int(rng.integers(len(actions)))]
        objects.append(_make_object(rng, world, shape, colour, action, size, objects, full_rotation=rng.random() < 0.3))
    caption = make_caption(rng, scene, [(o.colour, o.shape) for o in objects])
    spec = ClipSpec(
        video_id="frame",
        split="frames",
        index=0,
        scene=scene,
        objects=tuple(objects),
        noise_seed=int(rng.integers(2**31)),
        size=size,
        num_frames=num_frames,
        caption=caption,
        labels=(),
    )
    t = int(rng.integers(num_frames))
    return FrameSample(render_frame(spec, t), caption, spec)


# --------------------------------------------------------------------------------------------------
# mp4 writing (PyAV, H.264 yuv420p)
# --------------------------------------------------------------------------------------------------
def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: int, crf: int = 18) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as H.264 (yuv420p) mp4, atomically (tmp + os.replace).

    One encoder thread and no B-frames: deterministic output, and frame-accurate seeking in
    decord. Even H and W are required by yuv420p.
    """
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise SynthWorldError(f"{path}: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(
                "libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast", "bf": "0", "threads": "1"}
            )
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.thread_count = 1
            tb = Fraction(1, fps)
            for i in range(t):
                frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
                frame.pts, frame.time_base = i, tb
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))  # flush
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def render_to_mp4(job: tuple[ClipSpec, str, int]) -> tuple[str, str | None]:
    """Worker: render one clip and write it; returns ``(video_id, error or None)`` (never raises)."""
    spec, path, fps = job
    try:
        write_mp4(render_clip(spec), path, fps)
        return spec.video_id, None
    except Exception as e:  # one bad clip is counted and reported, never crashes the run
        return spec.video_id, f"{type(e).__name__}: {e}"


def resolve_workers(workers: int) -> int:
    """``workers`` or, for 0, the cores this process may use."""
    if workers > 0:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def render_all(
    specs: Sequence[ClipSpec],
    video_dir: str | os.PathLike,
    *,
    fps: int,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, str]:
    """Render and encode every clip to ``video_dir/<video_id>.mp4`` with a process pool.

    Args:
        specs: clips to render.
        video_dir: output folder (created).
        fps: frame rate written into the container.
        workers: processes; 0 = all usable cores; 1 = in this process.
        progress: tqdm bar on stderr.

    Returns:
        ``{video_id: error}`` for the clips that failed (empty when all succeeded).
    """
    from tqdm import tqdm

    video_dir = Path(video_dir)
    video_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(s, str(video_dir / f"{s.video_id}.mp4"), fps) for s in specs]
    n_workers = min(resolve_workers(workers), max(len(jobs), 1))
    bar = tqdm(
        total=len(jobs), desc="render clips", unit="clip", file=sys.stderr, disable=not progress, mininterval=1.0
    )
    errors: dict[str, str] = {}
    try:
        if n_workers <= 1:
            results: Any = map(render_to_mp4, jobs)
            for vid, err in results:
                if err:
                    errors[vid] = err
                bar.update(1)
        else:
            import multiprocessing as mp

            # spawn: safe whatever the parent holds (torch threads, Ray, Prefect); workers import
            # only numpy/PIL/av. Chunks amortise the IPC; the order of results does not matter.
            with mp.get_context("spawn").Pool(n_workers) as pool:
                chunk = max(1, min(16, len(jobs) // (4 * n_workers)))
                for vid, err in pool.imap_unordered(render_to_mp4, jobs, chunksize=chunk):
                    if err:
                        errors[vid] = err
                    bar.update(1)
    finally:
        bar.close()
    return errors


def plan_world(
    *,
    seed: int,
    n_train: int,
    n_val: int,
    n_test: int,
    num_frames: int = 16,
    size: int = 64,
    max_objects: int = 2,
    game_title_rate: float = 0.08,
    rare_label_rate: float = 0.01,
    world: World = WORLD,
) -> list[ClipSpec]:
    """Specs of every clip of every split (train, val, then each open split with ``n_test`` clips)."""
    sizes = {"train": n_train, "val": n_val, **{s: n_test for s in OPEN_SPLITS}}
    specs: list[ClipSpec] = []
    for split in SPLITS:
        specs += plan_split(
            world,
            split,
            sizes[split],
            seed=seed,
            size=size,
            num_frames=num_frames,
            max_objects=max_objects,
            game_title_rate=game_title_rate,
            rare_label_rate=rare_label_rate,
        )
    return specs


def manifest_rows(specs: Sequence[ClipSpec], video_subdir: str = "videos") -> list[dict[str, Any]]:
    """Manifest rows (agreed columns) for ``specs``; paths are relative to the manifest's folder."""
    return [
        {
            "video_id": s.video_id,
            "path": f"{video_subdir}/{s.video_id}.mp4",
            "labels": list(s.labels),
            "split": s.split,
            "source": SOURCE,
            "caption": s.caption,
        }
        for s in specs
    ]
