"""The Shapes world's vocabulary, scenes and captions (the contract is SHAPES.md).

A `Scene` is what a caption says: zero to two objects, each a size, colour, shape and
direction, on a uniform background. `format_caption` and `parse_caption` map between the
two exactly; `is_held_out` is the rule that keeps some objects out of training so that
evaluation can measure compositional generalisation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from kinema.errors import KinemaError

# Vocabulary, in SHAPES.md order: the held-out rule indexes these tuples.
SIZES: tuple[str, ...] = ("small", "large")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "cyan", "magenta")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
BACKGROUNDS: tuple[str, ...] = ("black", "gray", "white")

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "cyan": (40, 220, 220),
    "magenta": (220, 50, 220),
}
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "white": (255, 255, 255),
}

# Object size as a fraction of min(H, W): circle diameter, square side, triangle base and height.
SIZE_FRACTION: dict[str, float] = {"small": 0.25, "large": 0.40}
# Total displacement from frame 0 to frame T-1, as a fraction of the canvas extent along the axis.
DISPLACEMENT_FRACTION = 0.40
# Unit direction (dx, dy) in image coordinates: x grows right, y grows down.
DIRECTION_VECTORS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

MAX_OBJECTS = 2

GRAMMAR = (
    "'a {size} {color} {shape} moving {direction} on a {background} background', "
    "'a {size} {color} {shape} moving {direction} and a {size} {color} {shape} moving {direction} "
    "on a {background} background' (distinct colours) or 'an empty {background} background'; "
    f"size: {'|'.join(SIZES)}; color: {'|'.join(COLORS)}; shape: {'|'.join(SHAPES)}; "
    f"direction: {'|'.join(DIRECTIONS)}; background: {'|'.join(BACKGROUNDS)}"
)


class CaptionError(KinemaError):
    """A caption or scene outside the Shapes grammar (the message states the grammar)."""


def _check_word(kind: str, word: str, allowed: tuple[str, ...]) -> None:
    if word not in allowed:
        raise CaptionError(f"unknown {kind} {word!r}; expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ShapeObject:
    """One moving object; every field is a word of the vocabulary above."""

    size: str
    color: str
    shape: str
    direction: str

    def __post_init__(self) -> None:
        _check_word("size", self.size, SIZES)
        _check_word("colour", self.color, COLORS)
        _check_word("shape", self.shape, SHAPES)
        _check_word("direction", self.direction, DIRECTIONS)


@dataclass(frozen=True)
class Scene:
    """Objects in drawing order (later ones are drawn over earlier ones) on a background."""

    objects: tuple[ShapeObject, ...]
    background: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        _check_word("background", self.background, BACKGROUNDS)
        if len(self.objects) > MAX_OBJECTS:
            raise CaptionError(f"a scene holds at most {MAX_OBJECTS} objects, got {len(self.objects)}")
        for obj in self.objects:
            if not isinstance(obj, ShapeObject):
                raise CaptionError(f"scene objects must be ShapeObject, got {type(obj).__name__}")
        colors = [o.color for o in self.objects]
        if len(set(colors)) != len(colors):
            raise CaptionError(f"the objects of a scene need distinct colours, got {' and '.join(colors)}")


# ----------------------------------------------------------------------------- captions


def _object_phrase(obj: ShapeObject) -> str:
    return f"a {obj.size} {obj.color} {obj.shape} moving {obj.direction}"


def format_caption(scene: Scene) -> str:
    """The one caption of the grammar that describes `scene`."""
    if not scene.objects:
        return f"an empty {scene.background} background"
    objects = " and ".join(_object_phrase(o) for o in scene.objects)
    return f"{objects} on a {scene.background} background"


class _Words:
    """A cursor over caption words that raises CaptionError naming what it expected."""

    def __init__(self, text: str, words: list[str]):
        self.text, self.words, self.pos = text, words, 0

    def fail(self, expected: str) -> CaptionError:
        found = repr(self.words[self.pos]) if self.pos < len(self.words) else "the end"
        return CaptionError(f"cannot parse caption {self.text!r}: expected {expected} at word {self.pos + 1}, "
                            f"found {found}; the grammar is {GRAMMAR}")

    def peek(self) -> str | None:
        return self.words[self.pos] if self.pos < len(self.words) else None

    def take(self, allowed: tuple[str, ...], name: str) -> str:
        word = self.peek()
        if word not in allowed:
            raise self.fail(name)
        self.pos += 1
        return word


def _parse_object(words: _Words) -> ShapeObject:
    words.take(("a",), "'a'")
    size = words.take(SIZES, f"a size ({'|'.join(SIZES)})")
    color = words.take(COLORS, f"a colour ({'|'.join(COLORS)})")
    shape = words.take(SHAPES, f"a shape ({'|'.join(SHAPES)})")
    words.take(("moving",), "'moving'")
    direction = words.take(DIRECTIONS, f"a direction ({'|'.join(DIRECTIONS)})")
    return ShapeObject(size, color, shape, direction)


def parse_caption(text: str) -> Scene:
    """Parse a caption of the Shapes grammar into a Scene; raise CaptionError otherwise.

    Tolerated: surrounding whitespace, runs of whitespace between words, one trailing
    period. Everything else (capitals, extra words, unknown words, three objects, two
    objects of one colour) is rejected, because only this grammar can be evaluated.
    """
    if not isinstance(text, str):
        raise CaptionError(f"a caption is a string, got {type(text).__name__}")
    stripped = text.strip()
    if stripped.endswith("."):
        stripped = stripped[:-1]
    if stripped != stripped.lower():
        raise CaptionError(f"cannot parse caption {text!r}: captions are lower case; the grammar is {GRAMMAR}")
    words = _Words(text, stripped.split())
    bg_name = f"a background ({'|'.join(BACKGROUNDS)})"
    if words.peek() == "an":
        words.take(("an",), "'an'")
        words.take(("empty",), "'empty'")
        background = words.take(BACKGROUNDS, bg_name)
        words.take(("background",), "'background'")
        objects: list[ShapeObject] = []
    else:
        if words.peek() != "a":
            raise words.fail("'a' or 'an'")
        objects = [_parse_object(words)]
        if words.peek() == "and":
            words.take(("and",), "'and'")
            objects.append(_parse_object(words))
        words.take(("on",), "'on'" if len(objects) == MAX_OBJECTS else "'on' or 'and'")
        words.take(("a",), "'a'")
        background = words.take(BACKGROUNDS, bg_name)
        words.take(("background",), "'background'")
    if words.peek() is not None:
        raise words.fail("the end of the caption")
    try:
        return Scene(tuple(objects), background)
    except CaptionError as e:
        raise CaptionError(f"cannot parse caption {text!r}: {e}; the grammar is {GRAMMAR}") from None


# ----------------------------------------------------------------------------- held-out rule


def is_held_out(obj: ShapeObject) -> bool:
    """SHAPES.md: held out iff (colour + 2*shape + 3*direction) % 7 == 0, indices in vocabulary order.

    Size does not enter the rule, so both sizes of a held-out combination are held out.
    """
    c, s, d = COLORS.index(obj.color), SHAPES.index(obj.shape), DIRECTIONS.index(obj.direction)
    return (c + 2 * s + 3 * d) % 7 == 0


ALL_OBJECTS: tuple[ShapeObject, ...] = tuple(
    ShapeObject(size, color, shape, direction)
    for color, shape, direction, size in itertools.product(COLORS, SHAPES, DIRECTIONS, SIZES)
)
HELD_OUT_OBJECTS: tuple[ShapeObject, ...] = tuple(o for o in ALL_OBJECTS if is_held_out(o))
TRAIN_OBJECTS: tuple[ShapeObject, ...] = tuple(o for o in ALL_OBJECTS if not is_held_out(o))

SPLITS: tuple[str, ...] = ("train", "heldout", "any")


def _split_objects(split: str) -> tuple[ShapeObject, ...]:
    if split == "train":
        return TRAIN_OBJECTS
    if split == "heldout":
        return HELD_OUT_OBJECTS
    if split == "any":
        return ALL_OBJECTS
    raise KinemaError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


# ----------------------------------------------------------------------------- sampling


def object_pool(split: str, shapes: tuple[str, ...] | None = None,
                sizes: tuple[str, ...] | None = None) -> tuple[ShapeObject, ...]:
    """The objects of `split`, optionally only those of the given shapes and sizes.

    A narrowed pool lets a training mixture weight what a model gets wrong (the default
    model's failures are mostly small squares) without touching the split's held-out rule.
    """
    pool = _split_objects(split)
    for kind, words, allowed in (("shape", shapes, SHAPES), ("size", sizes, SIZES)):
        if words is not None:
            if not words:
                raise KinemaError(f"an object filter needs at least one {kind}; leave it unset for all")
            for word in words:
                _check_word(kind, word, allowed)
    return tuple(o for o in pool if (shapes is None or o.shape in shapes) and (sizes is None or o.size in sizes))


def random_scene(rng: np.random.Generator, *, split: str = "train", p_empty: float = 0.05,
                 p_two: float = 0.3, objects: tuple[ShapeObject, ...] | None = None) -> Scene:
    """Draw a scene; deterministic given the generator's state.

    split "train": empty with probability p_empty, two objects with p_two, else one; every
    object is uniform over the non-held-out objects, so no held-out object ever appears.
    split "any": the same mix over all objects. split "heldout": always one held-out object
    (evaluation prompts), p_empty and p_two are ignored. Backgrounds are uniform. `objects`
    (object_pool's narrowed pool of the split) replaces the split's objects.
    """
    pool = _split_objects(split) if objects is None else objects
    if not (0.0 <= p_empty and 0.0 <= p_two and p_empty + p_two <= 1.0):
        raise KinemaError(f"need p_empty >= 0, p_two >= 0 and p_empty + p_two <= 1, got {p_empty} and {p_two}")
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if split == "heldout":
        count = 1
    else:
        u = float(rng.random())
        count = 0 if u < p_empty else 2 if u < p_empty + p_two else 1
    objects: list[ShapeObject] = []
    for _ in range(count):
        taken = {o.color for o in objects}
        choices = [o for o in pool if o.color not in taken]
        objects.append(choices[int(rng.integers(len(choices)))])
    return Scene(tuple(objects), background)


def prompt_set(split: str, n: int, seed: int = 0) -> list[str]:
    """`n` one-object captions for evaluation, a pure function of (split, n, seed).

    All one-object captions of the split (object x size x background; 66 for "heldout")
    are put in a seeded order and cycled, so every combination appears floor(n/k) or
    ceil(n/k) times: coverage is even whatever n is.
    """
    if n < 0:
        raise KinemaError(f"the number of prompts must be >= 0, got {n}")
    combos = [Scene((obj,), bg) for obj in _split_objects(split) for bg in BACKGROUNDS]
    order = np.random.default_rng([seed, 0x5A4E]).permutation(len(combos))
    return [format_caption(combos[order[k % len(combos)]]) for k in range(n)]
