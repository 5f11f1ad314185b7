"""Playing-card images rendered from KDE's card decks: a many-style RGB image set that is not glyphs.

One class = one of the 52 cards (named ``"<rank>_<suit>"`` as in the decks' SVG ids, e.g. ``"queen_heart"``,
``"1_spade"`` for the ace); one sample = that card drawn by one deck style. Images are uint8 RGB (N, S, S, 3):
the card cropped to its outline, scaled to fit S px high keeping its aspect ratio, on a neutral grey (128)
background. Ranks are the groups the benchmark splits by (`BASE_RANKS` for the tasks that grow a collective,
`NOVEL_RANKS` for target tasks), so a target class is never seen in training, in any suit.

    cards = load_cards(size=32)                          # renders once (~1 min), then reads var/data/cards-32.npz
    ds = cards.dataset()                                 # a TaskDataset of every card
    base = ds.subset(cards.samples_of(cards.classes_of(BASE_RANKS)))

The decks come from Debian's ``kdegames-card-data-kf5`` (16 SVG decks, GPL/LGPL and similar), rasterised with
``rsvg-convert`` (``librsvg2-bin``); ``scripts/install-cards.sh`` installs both. The images are built on each
machine and never committed. What makes a sample usable:

- the card is rendered alone (``rsvg-convert --export-id``) and cropped to its opaque outline, since librsvg's
  box for an element often includes clipped-away artwork; decks that embed each card as a PNG (``<image>`` with
  a data URI, which rsvg-convert cannot export alone) are decoded directly;
- a render whose outline is not card-shaped (height/width outside 1.2..1.75) is dropped;
- the German-suited deck (``svg-xskat-german``: acorns, leaves, hearts, bells drawn on the French ids) is left
  out, since its "clubs" are not clubs;
- clone decks are dropped: a deck whose cards are nearly identical to an already kept deck's on most cards
  (same artwork on another background: oxygen-white, nicu-white). Left in, a query card would have a near-copy
  in the support set.
"""
from __future__ import annotations

import base64
import gzip
import io
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from learngene.data import TaskDataset
from learngene.datasets.glyphs import write_npz_atomically

SUITS = ("club", "diamond", "heart", "spade")
RANKS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "jack", "queen", "king")
CARDS = tuple(f"{r}_{s}" for r in RANKS for s in SUITS)
# The split the benchmark uses: ranks, never single cards, so target ranks are new in every suit.
BASE_RANKS = ("1", "3", "4", "6", "7", "9", "10", "queen")  # 32 classes for the collective's tasks
NOVEL_RANKS = ("2", "5", "8", "jack", "king")  # 20 classes for target tasks

DEFAULT_DECK_DIR = "/usr/share/carddecks"
EXCLUDED_DECKS = ("svg-xskat-german",)
BACKGROUND = 128  # grey behind the card and in the margins
CACHE_VERSION = 2  # bump when rendering or selection changes, so old caches are rebuilt
RENDER_SCALE = 4  # cards are rasterised at about this many times the target height, then downscaled
MIN_ASPECT, MAX_ASPECT = 1.2, 1.75  # height / width of a card-shaped render
# A deck is a clone of another when the median over their cards of the RMS distance (0..1, 16 px grey) is below
# this: the two oxygen and the two nicu variants measure about 0.05, distinct decks 0.10 and more.
CLONE_MEDIAN_RMS = 0.075


@dataclass
class CardSet:
    """Rendered cards: x uint8 (N, S, S, 3), labels int64 (N,) indexing class_names, the deck of each sample."""

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    decks: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # deck -> why it was left out

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_names = [str(c) for c in self.class_names]
        self.decks = [str(d) for d in self.decks]
        if self.x.ndim != 4 or self.x.shape[1] != self.x.shape[2] or self.x.shape[3] not in (1, 3):
            raise ValueError(f"x must be (N, S, S, 3) or (N, S, S, 1), got {self.x.shape}")
        if not len(self.x) == len(self.labels) == len(self.decks):
            raise ValueError("x, labels and decks must have one entry per sample")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError("labels must index class_names")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def rank_of(self, class_id: int) -> str:
        return self.class_names[class_id].rsplit("_", 1)[0]

    def classes_of(self, ranks: str | Iterable[str]) -> list[int]:
        """Ids of the classes (cards) of the given ranks; unknown ranks raise ValueError."""
        wanted = {ranks} if isinstance(ranks, str) else set(ranks)
        if wanted - set(RANKS):
            raise ValueError(f"unknown ranks {sorted(wanted - set(RANKS))}; known: {', '.join(RANKS)}")
        return [c for c in range(self.num_classes) if self.rank_of(c) in wanted]

    def samples_of(self, class_ids: int | Iterable[int]) -> np.ndarray:
        """Indices of the samples of the given classes, in sample order."""
        ids = [class_ids] if isinstance(class_ids, (int, np.integer)) else list(class_ids)
        return np.flatnonzero(np.isin(self.labels, np.asarray(ids, dtype=np.int64)))

    def dataset(self) -> TaskDataset:
        """Every sample as a TaskDataset (same labels and class names); `.subset(index)` takes parts of it."""
        return TaskDataset(self.x, self.labels, self.class_names)

    def grayscale(self) -> CardSet:
        """The same cards as one luminance channel (ITU-R BT.601 weights, as the service converts RGB)."""
        if self.x.shape[3] == 1:
            return self
        gray = self.x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return CardSet(np.round(gray)[..., None].astype(np.uint8), self.labels, self.class_names, self.decks,
                       dict(self.dropped))

    def summary(self) -> str:
        per_class = np.bincount(self.labels, minlength=self.num_classes)
        kept = sorted(set(self.decks))
        lines = [f"{self.num_classes} classes, {len(self)} images of {self.size}x{self.size}x{self.x.shape[3]}, "
                 f"{per_class.min() if len(per_class) else 0}..{per_class.max() if len(per_class) else 0} a class",
                 f"decks ({len(kept)}): {', '.join(kept)}"]
        lines += [f"left out {d}: {why}" for d, why in sorted(self.dropped.items())]
        return "\n".join(lines)

    # -- cache ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path, meta: dict[str, int] | None = None) -> None:
        """Write an .npz with plain arrays only (strings as unicode arrays), atomically."""
        dropped = sorted(self.dropped.items())
        write_npz_atomically(path, {
            "x": self.x, "labels": self.labels, "class_names": np.array(self.class_names, dtype=str),
            "decks": np.array(self.decks, dtype=str),
            "dropped_decks": np.array([d for d, _ in dropped], dtype=str),
            "dropped_why": np.array([w for _, w in dropped], dtype=str),
        }, meta)

    @classmethod
    def load(cls, path: str | Path) -> tuple[CardSet, dict[str, int]]:
        with np.load(path, allow_pickle=False) as z:
            meta = {k[5:]: int(z[k]) for k in z.files if k.startswith("meta_")}
            cards = cls(z["x"], z["labels"], z["class_names"].tolist(), z["decks"].tolist(),
                        dict(zip(z["dropped_decks"].tolist(), z["dropped_why"].tolist())))
        return cards, meta


# -- rendering ------------------------------------------------------------------------------------------------


def deck_files(deck_dir: str | Path = DEFAULT_DECK_DIR) -> dict[str, Path]:
    """deck name (its folder) -> its SVG file, for every deck folder holding one (.svgz or .svg)."""
    out = {}
    root = Path(deck_dir)
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        svgs = sorted(d.glob("*.svgz")) + sorted(d.glob("*.svg"))
        if d.is_dir() and svgs:
            out[d.name] = svgs[0]
    return out


def _svg_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8", errors="replace")


def _embedded_png(svg: str, card: str) -> bytes | None:
    """The PNG an ``<image id=card>`` element carries as a data URI (decks made of bitmaps), if any."""
    m = re.search(r"<image\b[^>]*?\bid=\"" + re.escape(card) + r"\"[^>]*>", svg, re.S)
    if m is None:
        return None
    href = re.search(r"href=\"data:image/png;base64,([^\"]+)\"", m.group(0), re.S)
    return base64.b64decode(re.sub(r"\s+", "", href.group(1))) if href else None


def _rsvg(path: Path, card: str, zoom: float) -> bytes | None:
    done = subprocess.run(["rsvg-convert", "--export-id", card, "--zoom", f"{zoom:.4f}", str(path)],
                          capture_output=True, timeout=120)
    return done.stdout if done.returncode == 0 and done.stdout else None


def _card_rgba(png: bytes) -> np.ndarray | None:
    """Decoded RGBA cropped to the opaque outline, or None when that outline is not card-shaped."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgba = np.array(im.convert("RGBA"))
    ys, xs = np.nonzero(rgba[..., 3] >= 32)
    if len(ys) == 0:
        return None
    crop = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    aspect = crop.shape[0] / crop.shape[1]
    return crop if MIN_ASPECT <= aspect <= MAX_ASPECT else None


def _fit(rgba: np.ndarray, size: int) -> np.ndarray:
    """A card (RGBA) composited on grey, scaled to fit `size` px keeping its aspect, centred: (size, size, 3)."""
    from PIL import Image

    card = Image.fromarray(rgba, "RGBA")
    scale = size / max(card.size)
    w, h = max(1, round(card.width * scale)), max(1, round(card.height * scale))
    card = card.resize((w, h), Image.Resampling.LANCZOS)
    out = Image.new("RGBA", (size, size), (BACKGROUND, BACKGROUND, BACKGROUND, 255))
    out.alpha_composite(card, ((size - w) // 2, (size - h) // 2))
    return np.array(out.convert("RGB"))


def render_deck(path: Path, cards: Sequence[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(cards), size, size, 3) images and a bool mask of the cards that rendered card-shaped."""
    svg = _svg_text(path)
    out = np.full((len(cards), size, size, 3), BACKGROUND, dtype=np.uint8)
    ok = np.zeros(len(cards), dtype=bool)
    zoom = None  # one zoom per deck, from its first card, so that every card gets about RENDER_SCALE * size px
    for i, card in enumerate(cards):
        png = _embedded_png(svg, card)
        if png is None:
            if zoom is None:
                first = _card_rgba(_rsvg(path, card, 1.0) or b"") if shutil.which("rsvg-convert") else None
                zoom = RENDER_SCALE * size / first.shape[0] if first is not None else 1.0
            png = _rsvg(path, card, zoom)
        rgba = _card_rgba(png) if png else None
        if rgba is not None:
            out[i], ok[i] = _fit(rgba, size), True
    return out, ok


def _small_gray(x: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, 256) grey at 16 px in 0..1, for comparing decks."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).convert("L").resize((16, 16), Image.Resampling.BOX),
                                dtype=np.float32).reshape(-1) / 255 for im in x])


def _clone_of(small: np.ndarray, ok: np.ndarray, kept: list[int], d: int) -> int | None:
    """The kept deck that deck `d` copies (median RMS over the cards both drew below CLONE_MEDIAN_RMS), or None."""
    for k in kept:
        both = ok[d] & ok[k]
        if both.any():
            rms = np.sqrt(((small[d, both] - small[k, both]) ** 2).mean(axis=1))
            if np.median(rms) < CLONE_MEDIAN_RMS:
                return k
    return None


def render_cards(
    size: int = 32,
    deck_dir: str | Path = DEFAULT_DECK_DIR,
    decks: Iterable[str] | None = None,
    cards: Sequence[str] = CARDS,
    min_decks_per_class: int = 10,
    progress: Callable[[str], None] | None = None,
) -> CardSet:
    """Render `cards` from every deck under `deck_dir` (or the named `decks`); see the module docstring.

    A class is kept when at least `min_decks_per_class` decks drew it card-shaped; samples are in deck order.
    """
    if not shutil.which("rsvg-convert"):
        raise RuntimeError("rsvg-convert not found: run scripts/install-cards.sh (Debian librsvg2-bin)")
    files = deck_files(deck_dir)
    names = [d for d in files if (decks is None or d in set(decks))]
    dropped = {d: "German suits on the French card ids" for d in names if d in EXCLUDED_DECKS}
    names = [d for d in names if d not in dropped]
    images, oks = [], []
    for d in names:
        x, ok = render_deck(files[d], cards, size)
        images.append(x)
        oks.append(ok)
        if progress:
            progress(f"{d}: {int(ok.sum())}/{len(cards)} cards")
    x = np.stack(images) if images else np.zeros((0, len(cards), size, size, 3), np.uint8)
    ok = np.stack(oks) if oks else np.zeros((0, len(cards)), bool)
    kept: list[int] = []
    small = np.stack([_small_gray(x[d]) for d in range(len(names))]) if names else None
    for d in range(len(names)):
        if ok[d].mean() < 0.9:
            dropped[names[d]] = f"only {int(ok[d].sum())}/{len(cards)} cards rendered card-shaped"
        elif (k := _clone_of(small, ok, kept, d)) is not None:
            dropped[names[d]] = f"a clone of {names[k]}"
        else:
            kept.append(d)
    classes = [c for c in range(len(cards)) if ok[kept, c].sum() >= min_decks_per_class]
    xs, labels, sample_decks = [], [], []
    for new, c in enumerate(classes):
        for d in kept:
            if ok[d, c]:
                xs.append(x[d, c])
                labels.append(new)
                sample_decks.append(names[d])
    arr = np.stack(xs) if xs else np.zeros((0, size, size, 3), np.uint8)
    return CardSet(arr, np.array(labels, dtype=np.int64), [cards[c] for c in classes], sample_decks, dropped)


def load_cards(
    size: int = 32,
    cache_path: str | Path | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> CardSet:
    """The card set at `size` px, read from `cache_path` (default var/data/cards-<size>.npz) or rendered there.

    A cache from another version of this module is re-rendered; pass `rebuild=True` after installing decks.
    """
    path = Path(cache_path or f"var/data/cards-{size}.npz")
    meta = {"version": CACHE_VERSION, "size": size}
    if path.exists() and not rebuild:
        try:
            cached, cached_meta = CardSet.load(path)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or from an older layout: render anew
        else:
            if cached_meta == meta:
                return cached
    cards = render_cards(size, progress=progress)
    cards.save(path, meta)
    return cards
