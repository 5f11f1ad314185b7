"""Glyph images rendered from the installed fonts: a real, many-class image set built on the machine.

Omniglot-style: one class = one character of one script (named ``"script:char"``, e.g. ``"greek_lower:λ"``),
one sample = that character drawn by one font family. Images are 32x32 uint8, **white glyph (255) on black (0)**,
the ink cropped, scaled to fit 28 px keeping its aspect ratio, centred and stretched to full contrast.

    gs = load_glyphs()                                   # renders once (1-2 min), then reads var/data/glyphs.npz
    base = gs.to_task_dataset(gs.classes_of(BASE_SCRIPTS))

The fonts come from the Debian packages that ``scripts/install-fonts.sh`` installs. They are under GPL, OFL and
similar licences, so the images are built on each machine and never committed. What makes a sample usable:

- one face per family (the one closest to Regular: upright, weight 400, normal width);
- a font is used for a script only if it covers at least 90% of the script's characters (fontTools cmap) and
  really draws them (a mapped but empty glyph counts as missing);
- a font is dropped for a script when more than 10% of the script's characters share their drawing with
  another character (same glyph in the cmap, or the same bitmap: placeholder boxes), or when its characters
  are far more alike than a usual font's (symbol fonts that put a star or a keycap around every letter);
- a font that draws most lower-case letters like its own capitals (all-caps, small caps) is dropped for the
  lower case;
- clones are dropped: a font whose drawings are nearly identical to an already kept font on most of the script
  (Arimo/Liberation Sans, the Latin of every Noto script font, proportional/fixed variants of a CJK font). Left
  in, a query image would have a near-copy in the support set and few-shot accuracy would be inflated;
- outliers (pixel distance to the class mean, rule in `_outliers`): a font that is an outlier on more than half
  of a script is dropped for it; single far drawings are used only where a class has too few others;
- a class is kept with at least ``min_fonts_per_class`` samples and gets at most ``max_fonts_per_class``, taken
  in one fixed pseudo-random font order per script that takes turns between font folders (so a script's
  classes mostly share their fonts, and no one package dominates).

Complex scripts (Devanagari, Khmer, ...) are drawn one code point at a time, without shaping: independent
letters only, no combining marks, so every class is a single, self-contained glyph.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from learngene.data import TaskDataset

SIZE = 32  # side of every image
FIT = 28  # the ink is scaled to fit a FIT x FIT box, leaving a margin
RENDER_PX = 48  # font size glyphs are drawn at before the downscale (anti-aliasing gets good, speed stays fine)
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
DEFAULT_FONT_DIRS = ("/usr/share/fonts",)
CACHE_VERSION = 2  # bump when rendering or selection changes, so old caches are rebuilt

# Selection thresholds (see the module docstring). Distances are RMS over pixels scaled to 0..1.
MIN_COVERAGE = 0.9  # share of a script a font must cover
MAX_DUPLICATE_SHARE = 0.10  # share of a script's characters that may share a drawing with another one
DUPLICATE_RMS = 0.03  # two drawings closer than this are "the same bitmap"
CLONE_RMS = 0.06  # two fonts' drawings of one character closer than this are "the same design"
CLONE_SHARE = 0.8  # a font is a clone when this share of the characters it shares with a kept font is the same
ALIKE_RATIO = 0.5  # a font whose characters are this much more alike than the script's median font is dropped
CASE_RATIO = 0.6  # see _caps_in_lower
OUTLIER_FONT_SHARE = 0.5  # a font that is an outlier on more than this share of a script is dropped for it


def _chars(first: int, last: int, step: int = 1, categories: tuple[str, ...] = ("Lu", "Ll", "Lo", "Nd")) -> str:
    """The assigned characters of a code point range (inclusive) in the given Unicode categories."""
    return "".join(chr(c) for c in range(first, last + 1, step) if unicodedata.category(chr(c)) in categories)


def _ks_x_1001_hangul(n: int) -> str:
    """The first `n` of the 2,350 Hangul syllables of KS X 1001 (EUC-KR rows 0xB0-0xC8, in that order)."""
    syllables = (bytes([0xB0 + row, 0xA1 + col]).decode("euc_kr") for row in range(25) for col in range(94))
    return "".join(s for _, s in zip(range(n), syllables))


def _common_cjk(n: int) -> str:
    """The first `n` ideographs from U+4E00 that GB 2312, Big5, JIS X 0208 and KS X 1001 all encode.

    Taking U+4E00.. blindly would pick rare characters that Japanese, Korean and single-region Chinese fonts lack,
    leaving a handful of fonts per class; the four national sets' common part is drawn by all CJK fonts.
    """
    out = []
    for cp in range(0x4E00, 0xA000):
        ch = chr(cp)
        try:
            for codec in ("gb2312", "big5", "shift_jis", "euc_kr"):
                ch.encode(codec)
        except UnicodeEncodeError:
            continue
        out.append(ch)
        if len(out) == n:
            break
    return "".join(out)


# Every script: its characters in class order. Ranges are inclusive; unassigned code points are skipped.
SCRIPTS: dict[str, str] = {
    "latin_upper": _chars(0x41, 0x5A),  # A-Z
    "latin_lower": _chars(0x61, 0x7A),  # a-z
    "digits": _chars(0x30, 0x39),  # 0-9
    "greek_upper": _chars(0x391, 0x3A9),  # Α-Ω (24)
    "greek_lower": _chars(0x3B1, 0x3C9),  # α-ω with final ς (25)
    "cyrillic_upper": _chars(0x410, 0x42F),  # А-Я (32)
    "cyrillic_lower": _chars(0x430, 0x44F),  # а-я (32)
    "georgian": _chars(0x10D0, 0x10F0),  # Mkhedruli ა-ჰ (33)
    "hebrew": _chars(0x5D0, 0x5EA),  # א-ת with final forms (27)
    "devanagari": _chars(0x905, 0x939),  # independent vowels अ-औ and consonants क-ह (53)
    "bengali": _chars(0x985, 0x9B9),  # independent vowels and consonants অ-হ (44)
    "malayalam": _chars(0xD05, 0xD39),  # independent vowels and consonants അ-ഹ (51)
    "thai": _chars(0xE01, 0xE2E),  # consonants ก-ฮ, with ฤ and ฦ (46)
    "khmer": _chars(0x1780, 0x17A2) + _chars(0x17A5, 0x17B3),  # consonants, independent vowels (50)
    "myanmar": _chars(0x1000, 0x1021) + _chars(0x1023, 0x1027) + _chars(0x1029, 0x102A),  # (41)
    "ethiopic": _chars(0x1200, 0x1357, step=8),  # first order (ä) of every syllable series ሀ ለ ሐ ... (43)
    "hiragana": _chars(0x3041, 0x3096),  # ぁ-ゖ, small kana included (86)
    "katakana": _chars(0x30A1, 0x30FA),  # ァ-ヺ, small kana included (90)
    "hangul_jamo": _chars(0x3131, 0x3163),  # modern compatibility jamo ㄱ-ㅣ (51): the letters drawn alone
    "hangul": _ks_x_1001_hangul(400),  # 가 각 간 ... (400)
    "cjk": _common_cjk(600),  # 一 丁 七 ... (600)
}

# How the scripts are used: split by script, never by image (a script is a task's domain).
BASE_SCRIPTS = (
    "cjk", "hangul", "latin_upper", "latin_lower", "digits",
    "greek_upper", "greek_lower", "cyrillic_upper", "cyrillic_lower",
)  # fmt: skip
OPEN_WORLD_SCRIPTS = ("hiragana", "katakana", "hebrew", "georgian", "hangul_jamo")
NOVEL_SCRIPTS = ("devanagari", "bengali", "malayalam", "thai", "khmer", "myanmar", "ethiopic")

# Lower-case scripts and their capitals: the capitals are rendered along (even when not asked for) so that fonts
# drawing capitals at the lower-case code points can be found.
CASE_PAIRS = {"latin_lower": "latin_upper", "greek_lower": "greek_upper", "cyrillic_lower": "cyrillic_upper"}


def write_npz_atomically(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, int] | None = None) -> None:
    """A compressed .npz of `arrays` plus `meta` numbers (as ``meta_<name>``), written to a temp file then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {**arrays, **{f"meta_{k}": np.array(v, dtype=np.int64) for k, v in (meta or {}).items()}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class GlyphSet:
    """Rendered glyphs: x uint8 (N, 32, 32), labels int64 (N,) indexing class_names ("script:char")."""

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    class_script: list[str]
    fonts: list[str]  # the font family of each sample
    font_files: dict[str, str] = field(default_factory=dict)  # family -> "path#face index"
    scripts_rendered: list[str] = field(default_factory=list)  # what was asked for (some may have no classes)

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_names = [str(c) for c in self.class_names]
        self.class_script = [str(s) for s in self.class_script]
        self.fonts = [str(f) for f in self.fonts]
        if self.x.ndim != 3 or self.x.shape[1:] != (SIZE, SIZE):
            raise ValueError(f"x must be (N, {SIZE}, {SIZE}), got {self.x.shape}")
        if not len(self.x) == len(self.labels) == len(self.fonts):
            raise ValueError("x, labels and fonts must have one entry per sample")
        if len(self.class_names) != len(self.class_script):
            raise ValueError("class_names and class_script must have one entry per class")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError("labels must index class_names")
        if not self.scripts_rendered:
            self.scripts_rendered = self.scripts()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def scripts(self) -> list[str]:
        """The scripts that have classes, in `SCRIPTS` order."""
        present = set(self.class_script)
        return [s for s in SCRIPTS if s in present] + sorted(present - set(SCRIPTS))

    def classes_of(self, scripts: str | Iterable[str]) -> list[int]:
        """Ids of the classes of one script or of several; unknown script names raise ValueError."""
        wanted = {scripts} if isinstance(scripts, str) else set(scripts)
        unknown = wanted - set(SCRIPTS) - set(self.class_script)
        if unknown:
            raise ValueError(f"unknown scripts {sorted(unknown)}; known: {', '.join(SCRIPTS)}")
        return [c for c, s in enumerate(self.class_script) if s in wanted]

    def samples_of(self, class_ids: int | Iterable[int]) -> np.ndarray:
        """Indices of the samples of the given classes, in sample order."""
        ids = [class_ids] if isinstance(class_ids, (int, np.integer)) else list(class_ids)
        return np.flatnonzero(np.isin(self.labels, np.asarray(ids, dtype=np.int64)))

    def counts(self) -> dict[str, tuple[int, int]]:
        """script -> (classes, images)."""
        per_class = np.bincount(self.labels, minlength=self.num_classes)
        out: dict[str, tuple[int, int]] = {}
        for s in self.scripts():
            ids = self.classes_of(s)
            out[s] = (len(ids), int(per_class[ids].sum()))
        return out

    def summary(self) -> str:
        lines = [f"{s:15s} {k:5d} classes {n:6d} images" for s, (k, n) in self.counts().items()]
        lines.append(f"{'total':15s} {self.num_classes:5d} classes {len(self):6d} images")
        return "\n".join(lines)

    def to_task_dataset(
        self, class_ids: Sequence[int], sample_index: np.ndarray | Sequence[int] | None = None
    ) -> TaskDataset:
        """A TaskDataset of the given classes, relabelled 0..K-1 in the order of `class_ids`.

        `sample_index` picks samples (indices into this set, kept in that order; e.g. a support or query split);
        they must all belong to `class_ids`. By default all samples of those classes are taken.
        """
        ids = [int(c) for c in class_ids]
        if not ids:
            raise ValueError("no classes given")
        if len(set(ids)) != len(ids):
            raise ValueError("class_ids has repeats")
        if min(ids) < 0 or max(ids) >= self.num_classes:
            raise ValueError(f"class ids must lie in 0..{self.num_classes - 1}")
        remap = np.full(self.num_classes, -1, dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        if sample_index is None:
            index = self.samples_of(ids)
        else:
            index = np.asarray(sample_index, dtype=np.int64).reshape(-1)
            if np.any(remap[self.labels[index]] < 0):
                raise ValueError("sample_index holds samples of classes not in class_ids")
        return TaskDataset(self.x[index], remap[self.labels[index]], [self.class_names[c] for c in ids])

    def subset(self, class_ids: Sequence[int]) -> GlyphSet:
        """The given classes with all their samples, relabelled in the order given."""
        ids = [int(c) for c in class_ids]
        remap = np.full(self.num_classes, -1, dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        index = self.samples_of(ids)
        fonts = [self.fonts[i] for i in index]
        return GlyphSet(
            self.x[index], remap[self.labels[index]], [self.class_names[c] for c in ids],
            [self.class_script[c] for c in ids], fonts,
            {f: p for f, p in self.font_files.items() if f in set(fonts)},
            [s for s in self.scripts_rendered if s in {self.class_script[c] for c in ids}],
        )  # fmt: skip

    # -- cache ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path, meta: dict[str, int] | None = None) -> None:
        """Write an .npz with plain arrays only (strings as unicode arrays), atomically."""
        families = sorted(self.font_files)
        arrays = {
            "x": self.x,
            "labels": self.labels,
            "class_names": np.array(self.class_names, dtype=str),
            "class_script": np.array(self.class_script, dtype=str),
            "fonts": np.array(self.fonts, dtype=str),
            "font_families": np.array(families, dtype=str),
            "font_files": np.array([self.font_files[f] for f in families], dtype=str),
            "scripts_rendered": np.array(self.scripts_rendered, dtype=str),
        }
        write_npz_atomically(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> tuple[GlyphSet, dict[str, int]]:
        """Read what `save` wrote; returns the set and its meta numbers. Nothing is unpickled."""
        with np.load(path, allow_pickle=False) as z:
            meta = {k[5:]: int(z[k]) for k in z.files if k.startswith("meta_")}
            gs = cls(
                z["x"], z["labels"], z["class_names"].tolist(), z["class_script"].tolist(), z["fonts"].tolist(),
                dict(zip(z["font_families"].tolist(), z["font_files"].tolist())), z["scripts_rendered"].tolist(),
            )  # fmt: skip
        return gs, meta


# -- fonts -----------------------------------------------------------------------------------------------------


@dataclass
class _Face:
    path: str
    index: int  # face index inside a .ttc/.otc collection, else 0
    family: str
    rank: tuple  # lower = closer to a Regular face of the family
    cmap: dict[int, str]  # code point -> glyph name, only for the code points of the scripts asked for

    @property
    def file_ref(self) -> str:
        return f"{self.path}#{self.index}"


# Style words that end a family name in fonts without a typographic family name ("Lato Light"): stripped so the
# weights of one design form one family.
_STYLE_WORDS = re.compile(
    r"\s+(thin|hairline|extra ?light|ultra ?light|light|book|regular|normal|roman|medium|semi ?bold|demi ?bold|"
    r"bold|extra ?bold|ultra ?bold|black|heavy|italic|oblique|condensed|narrow)$",
    re.IGNORECASE,
)


def _family_key(name: str) -> str:
    name = " ".join(name.split())
    while (m := _STYLE_WORDS.search(name)) is not None:
        name = name[: m.start()]
    return name


def _font_files(font_dirs: Iterable[str | Path]) -> list[str]:
    files = set()
    for d in font_dirs:
        for root, _, names in os.walk(d):
            for n in names:
                if n.lower().endswith(FONT_SUFFIXES):
                    files.add(os.path.realpath(os.path.join(root, n)))  # Debian links fonts into several dirs
    return sorted(files)


def _index_faces(font_dirs: Iterable[str | Path], wanted: set[int]) -> list[_Face]:
    """Every face that maps some wanted code point, read with fontTools (cmap, names, OS/2).

    A family's faces are all listed; which one is used is decided per script (`_one_face_per_family`), so that
    what a script gets does not depend on which other scripts are rendered along.
    """
    from fontTools.ttLib import TTCollection, TTFont

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # it warns about many harmless table quirks
    faces = []
    for path in _font_files(font_dirs):
        try:
            if path.lower().endswith((".ttc", ".otc")):
                fonts = TTCollection(path, lazy=True).fonts
            else:
                fonts = [TTFont(path, lazy=True)]
        except Exception:
            continue  # not a font fontTools can read: skip it
        for index, font in enumerate(fonts):
            try:
                best = font.getBestCmap() or {}
                cmap = {cp: g for cp, g in best.items() if cp in wanted}
                if not cmap:
                    continue
                names = font["name"]
                family = names.getDebugName(16) or names.getDebugName(1) or Path(path).stem
                style = (names.getDebugName(17) or names.getDebugName(2) or "").lower()
                weight, width, italic = 400, 5, "italic" in style or "oblique" in style
                if "OS/2" in font:
                    try:
                        os2 = font["OS/2"]
                        weight, width = os2.usWeightClass, os2.usWidthClass
                        italic = italic or bool(os2.fsSelection & 1)
                    except Exception:
                        pass  # a broken OS/2 table: keep the defaults
            except Exception:
                continue
            irregular = style not in ("regular", "book", "roman", "normal", "")
            rank = (italic, abs(weight - 400), abs(width - 5), irregular, path, index)
            faces.append(_Face(path, index, _family_key(family), rank, cmap))
    return faces


def _one_face_per_family(faces: Iterable[_Face]) -> list[_Face]:
    """The most Regular face of each family (chosen among the faces that cover the script at hand)."""
    best_of: dict[str, _Face] = {}
    for f in faces:
        if f.family not in best_of or f.rank < best_of[f.family].rank:
            best_of[f.family] = f
    return sorted(best_of.values(), key=lambda f: f.family)


def _render_face(face: _Face, chars: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw `chars` with one face: (C, 32, 32) uint8 images and a (C,) mask of those really drawn."""
    from PIL import Image, ImageDraw, ImageFont

    out = np.zeros((len(chars), SIZE, SIZE), dtype=np.uint8)
    ok = np.zeros(len(chars), dtype=bool)
    try:
        font = ImageFont.truetype(face.path, RENDER_PX, index=face.index, layout_engine=ImageFont.Layout.BASIC)
    except Exception:
        return out, ok  # Pillow/FreeType cannot open it (bitmap-only sizes, broken tables): nothing drawn
    for i, ch in enumerate(chars):
        if ord(ch) not in face.cmap:
            continue
        try:
            left, top, right, bottom = font.getbbox(ch)
            if right <= left or bottom <= top:
                continue
            canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
            ImageDraw.Draw(canvas).text((2 - left, 2 - top), ch, font=font, fill=255)
        except Exception:
            continue
        ink = canvas.getbbox()
        if ink is None:
            continue  # mapped but empty
        glyph = canvas.crop(ink)
        w, h = glyph.size
        scale = FIT / max(w, h)
        glyph = glyph.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        w, h = glyph.size
        a = np.asarray(glyph, dtype=np.float32)
        peak = a.max()
        if peak <= 0:
            continue
        # Full contrast: hairline fonts otherwise come out as faint grey after the downscale.
        y0, x0 = (SIZE - h) // 2, (SIZE - w) // 2
        out[i, y0 : y0 + h, x0 : x0 + w] = np.clip(a * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        ok[i] = True
    return out, ok


def _font_order(faces: list[_Face], salt: str) -> list[_Face]:
    """A fixed pseudo-random order (the same on every machine and run) that takes turns between font folders.

    A folder is about one Debian package. Taking turns keeps one large package (fonts-aenigma alone has some 460
    decorative Latin fonts) from supplying most samples of a class; within a folder the order is a hash.
    """
    def key(f: _Face) -> str:
        return hashlib.sha1(f"{salt}:{f.family}".encode()).hexdigest()

    by_dir: dict[str, list[_Face]] = {}
    for f in sorted(faces, key=key):
        by_dir.setdefault(os.path.dirname(f.path), []).append(f)
    dir_key = {d: hashlib.sha1(f"{salt}:{d}".encode()).hexdigest() for d in by_dir}
    turns = [(turn, dir_key[d], f) for d, fs in by_dir.items() for turn, f in enumerate(fs)]
    return [f for _, _, f in sorted(turns, key=lambda t: t[:2])]


# -- selection ---------------------------------------------------------------------------------------------------


def _pairwise_rms(a: np.ndarray) -> np.ndarray:
    """RMS distance between all rows of a (n, d) float32 matrix."""
    sq = np.einsum("ij,ij->i", a, a)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (a @ a.T)
    return np.sqrt(np.maximum(d2, 0.0) / a.shape[1])


def _font_self_check(imgs: np.ndarray, ok: np.ndarray, glyph_names: list[str | None]) -> tuple[float, float]:
    """For one font and one script: (share of drawn characters that duplicate another, median nearest distance).

    A duplicate shares its glyph (cmap) or its bitmap with another character of the script. The median distance
    from each drawing to the most similar other one measures how distinct the font's characters are.
    """
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        return 0.0, 0.0
    d = _pairwise_rms(imgs[idx])
    np.fill_diagonal(d, np.inf)
    codes = {n: k for k, n in enumerate(dict.fromkeys(glyph_names[i] for i in idx if glyph_names[i] is not None))}
    gid = np.array([codes.get(glyph_names[i], -1 - k) for k, i in enumerate(idx)])  # unknown: equal to nothing
    same_glyph = (gid[:, None] == gid[None, :]) & ~np.eye(len(idx), dtype=bool)
    dup = (d.min(axis=1) < DUPLICATE_RMS) | same_glyph.any(axis=1)
    return float(dup.sum()) / len(idx), float(np.median(d.min(axis=1)))


def _clones(imgs: np.ndarray, ok: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Drop (in font order) each font that draws like an earlier kept one. imgs (F, C, D), ok (F, C), keep (F,)."""
    n_fonts, n_chars = ok.shape
    same = np.zeros((n_fonts, n_fonts), dtype=np.int32)  # characters drawn alike by both fonts
    for c in range(n_chars):
        rows = np.flatnonzero(ok[:, c] & keep)
        if len(rows) > 1:
            same[np.ix_(rows, rows)] += _pairwise_rms(imgs[rows, c]) < CLONE_RMS
    both = (ok & keep[:, None]).astype(np.int32)
    shared = both @ both.T
    keep = keep.copy()
    for f in np.flatnonzero(keep):
        earlier = np.flatnonzero(keep[:f])
        if len(earlier) and np.any(same[f, earlier] >= CLONE_SHARE * np.maximum(shared[f, earlier], 1)):
            keep[f] = False
    return keep


def _outliers(imgs: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(F, C) mask of drawings far from their class mean.

    Per class, d = RMS distance of each drawing to the mean of the class's drawings. A drawing is an outlier when
    d exceeds the class median of d by more than 3 robust standard deviations (1.4826 MAD) *and* by 25%: the
    second condition keeps tight classes (a sans-serif "I") from losing ordinary fonts to tiny differences.
    """
    out = np.zeros(ok.shape, dtype=bool)
    for c in range(ok.shape[1]):
        rows = np.flatnonzero(ok[:, c])
        if len(rows) < 5:
            continue  # too few to tell an outlier from a second style
        x = imgs[rows, c]
        d = np.sqrt(((x - x.mean(axis=0)) ** 2).mean(axis=1))
        med = np.median(d)
        mad = 1.4826 * np.median(np.abs(d - med))
        out[rows, c] = (d > med + 3.0 * mad) & (d > 1.25 * med)
    return out


def _caps_in_lower(lower: np.ndarray, lower_ok: np.ndarray, upper: np.ndarray, upper_ok: np.ndarray) -> np.ndarray:
    """(F,) mask of fonts that draw the lower case like their own capitals (all-caps and small-caps fonts).

    Per letter, the distance between a font's lower-case and capital drawing is divided by its median over the
    fonts; a font whose median ratio is under CASE_RATIO draws most lower-case letters as capitals. (o/O, s/S, ...
    look alike in every font once scaled to the box; that is why the rule is relative, letter by letter.)
    """
    both = lower_ok & upper_ok
    d = np.sqrt(((lower - upper) ** 2).mean(axis=2))
    d[~both] = np.nan
    typical = np.nanmedian(np.where(both.any(axis=0), d, 1.0), axis=0)
    ratio = d / np.maximum(typical, 1e-6)
    med = np.array([np.median(r[b]) if b.any() else np.inf for r, b in zip(ratio, both)])
    return med < CASE_RATIO


@dataclass
class _ScriptPick:
    script: str
    rows: list[np.ndarray]  # per character: the font rows to use (at most max_fonts, in font order)
    report: str
    dropped: dict[int, str]  # font row -> the filter that dropped it (for inspection)


def _filter_script(
    script: str,
    flat: np.ndarray,
    ok: np.ndarray,
    names: list[list[str | None]],
    partner: tuple[np.ndarray, np.ndarray] | None,
    min_fonts: int,
    max_fonts: int,
) -> _ScriptPick:
    """Apply the filters of the module docstring to one script. flat (F, C, D) in 0..1, ok (F, C)."""
    n_fonts, n = ok.shape
    dropped: dict[int, str] = {}

    def note(keep: np.ndarray, reason: str) -> None:
        for f in np.flatnonzero(~keep):
            dropped.setdefault(int(f), reason)

    covered = ok.sum(axis=1) >= MIN_COVERAGE * n
    note(covered, "coverage")
    stats = np.array([_font_self_check(flat[f], ok[f], names[f]) if covered[f] else (1.0, 0.0) for f in range(n_fonts)])
    keep = covered & (stats[:, 0] <= MAX_DUPLICATE_SHARE)
    n_cover, n_unique = int(covered.sum()), int(keep.sum())
    note(keep, "duplicates")
    if keep.any():
        # Symbol fonts (a star or a keycap around every letter) and fonts of near-identical sticks draw all
        # characters alike without being exact duplicates.
        keep &= stats[:, 1] >= ALIKE_RATIO * np.median(stats[keep, 1])
    n_distinct = int(keep.sum())
    note(keep, "alike")
    if partner is not None:
        keep &= ~_caps_in_lower(flat, ok, *partner)
    n_case = int(keep.sum())
    note(keep, "capitals")
    keep = _clones(flat, ok, keep)
    n_unclone = int(keep.sum())
    note(keep, "clone")
    # Fonts that are outliers on most of the script go; then the class means are recomputed without them and
    # drawings far from their class mean are used last, only where a class has too few others. (Far from the
    # mean is often just a bold or loopless style: dropping those outright would cost the small scripts, which
    # have no font to spare, some of their few styles.)
    far = _outliers(flat, ok & keep[:, None])
    share = far.sum(axis=1) / np.maximum((ok & keep[:, None]).sum(axis=1), 1)
    keep &= share <= OUTLIER_FONT_SHARE
    note(keep, "outlier")
    usable = ok & keep[:, None]
    far = _outliers(flat, usable)
    rows = []
    for j in range(n):
        near, distant = np.flatnonzero(usable[:, j] & ~far[:, j]), np.flatnonzero(usable[:, j] & far[:, j])
        picked = np.sort(np.concatenate([near, distant])[:max_fonts])
        rows.append(picked if len(picked) >= min_fonts else picked[:0])
    n_classes = sum(len(r) > 0 for r in rows)
    report = (
        f"{script}: {n_fonts} fonts tried, {n_cover} cover it, {n_unique} without duplicates, {n_distinct} distinct, "
        + (f"{n_case} with a lower case, " if partner is not None else "")
        + f"{n_unclone} not clones, {int(keep.sum())} not outliers -> {n_classes}/{n} classes, "
        + f"{sum(len(r) for r in rows)} images"
    )
    return _ScriptPick(script, rows, report, dropped)


def _render_group(
    faces: list[_Face], scripts: list[str], emit: list[str], min_fonts: int, max_fonts: int, log: Callable[[str], None]
):
    """Render `scripts` (one script, or a case pair) with every face that covers one of them.

    Yields (script, char, images, faces) for each kept class of the scripts in `emit`.
    """
    chars = "".join(SCRIPTS[s] for s in scripts)
    spans, start = {}, 0
    for s in scripts:
        spans[s] = slice(start, start + len(SCRIPTS[s]))
        start += len(SCRIPTS[s])
    code_points = [{ord(ch) for ch in SCRIPTS[s]} for s in scripts]
    cands = [f for f in faces if any(len(cp & f.cmap.keys()) >= MIN_COVERAGE * len(cp) for cp in code_points)]
    cands = _font_order(_one_face_per_family(cands), "|".join(scripts))
    if not cands:
        for s in emit:
            log(f"{s}: no font covers it")
        return
    imgs = np.zeros((len(cands), len(chars), SIZE, SIZE), dtype=np.uint8)
    ok = np.zeros((len(cands), len(chars)), dtype=bool)
    for i, face in enumerate(cands):
        imgs[i], ok[i] = _render_face(face, chars)
    picks = {}
    for s in emit:
        sl = spans[s]
        flat = imgs[:, sl].reshape(len(cands), sl.stop - sl.start, -1).astype(np.float32) / 255.0
        partner = None
        if s in CASE_PAIRS and CASE_PAIRS[s] in spans:
            upper = SCRIPTS[CASE_PAIRS[s]]
            # The capital of each lower-case letter (ς has Σ); a letter without one takes no part in the check.
            has_capital = np.array([ch.upper() in upper for ch in SCRIPTS[s]])
            at = [spans[CASE_PAIRS[s]].start + upper.index(ch.upper()) if cap else sl.start + j
                  for j, (ch, cap) in enumerate(zip(SCRIPTS[s], has_capital))]  # fmt: skip
            partner = (
                imgs[:, at].reshape(len(cands), len(at), -1).astype(np.float32) / 255.0,
                ok[:, at] & has_capital[None, :],
            )
        names = [[f.cmap.get(ord(ch)) for ch in SCRIPTS[s]] for f in cands]
        picks[s] = _filter_script(s, flat, ok[:, sl], names, partner, min_fonts, max_fonts)
    for s in emit:
        for j, (ch, rows) in enumerate(zip(SCRIPTS[s], picks[s].rows)):
            if len(rows):
                yield s, ch, imgs[rows, spans[s].start + j], [cands[r] for r in rows]
        log(picks[s].report)


def _script_names(scripts: str | Iterable[str] | None) -> list[str]:
    """The scripts asked for, checked, in SCRIPTS order (None: all)."""
    names = list(SCRIPTS) if scripts is None else ([scripts] if isinstance(scripts, str) else list(scripts))
    unknown = [s for s in names if s not in SCRIPTS]
    if unknown:
        raise ValueError(f"unknown scripts {unknown}; known: {', '.join(SCRIPTS)}")
    return [s for s in SCRIPTS if s in set(names)]


def render_glyphs(
    scripts: str | Iterable[str] | None = None,
    font_dirs: Iterable[str | Path] = DEFAULT_FONT_DIRS,
    max_fonts_per_class: int = 20,
    min_fonts_per_class: int = 10,
    progress: Callable[[str], None] | None = None,
) -> GlyphSet:
    """Render the glyph set from the fonts under `font_dirs` (all scripts by default).

    `progress` gets one line per script (fonts kept at each filter, classes, images). Classes come out in
    `SCRIPTS` order, samples grouped by class.
    """
    names = _script_names(scripts)
    if max_fonts_per_class < min_fonts_per_class or min_fonts_per_class < 1:
        raise ValueError("need 1 <= min_fonts_per_class <= max_fonts_per_class")
    log = progress or (lambda line: None)
    t0 = time.monotonic()
    wanted = {ord(ch) for s in names for ch in SCRIPTS[s]}
    faces = _index_faces(font_dirs, wanted)
    log(
        f"{len({f.family for f in faces})} font families cover some of the scripts "
        f"({time.monotonic() - t0:.0f} s to index)" + ("" if faces else "; install the fonts with scripts/install-fonts.sh")
    )

    groups: dict[str, list[str]] = {}  # a lower case is rendered with its capitals
    for s in names:
        head = CASE_PAIRS.get(s, s)
        groups.setdefault(head, [head] if head != s else [])
        if s not in groups[head]:
            groups[head].append(s)
    xs, labels, class_names, class_script, fonts, files = [], [], [], [], [], {}
    for group in groups.values():
        emit = [s for s in group if s in names]
        picked = _render_group(faces, group, emit, min_fonts_per_class, max_fonts_per_class, log)
        for script, ch, images, used in picked:
            labels += [len(class_names)] * len(images)
            class_names.append(f"{script}:{ch}")
            class_script.append(script)
            xs.append(images)
            fonts += [f.family for f in used]
            files.update((f.family, f.file_ref) for f in used)
    # A capital script comes right before its lower case in SCRIPTS, so classes come out in SCRIPTS order.
    x = np.concatenate(xs) if xs else np.zeros((0, SIZE, SIZE), dtype=np.uint8)
    gs = GlyphSet(x, np.asarray(labels, dtype=np.int64), class_names, class_script, fonts, files, names)
    log(f"{gs.num_classes} classes, {len(gs)} images in {time.monotonic() - t0:.0f} s")
    return gs


def load_glyphs(
    cache_path: str | Path = "var/data/glyphs.npz",
    scripts: str | Iterable[str] | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GlyphSet:
    """The glyph set of `scripts` (all by default), read from `cache_path` or rendered and cached there.

    A cache made by another version of this module, or lacking some of the scripts asked for, is re-rendered
    (for the union of its scripts and the new ones, so it only grows). The cache does not notice fonts
    installed after it was made: pass `rebuild=True` then. Relative paths are relative to the current directory.
    """
    names = _script_names(scripts)
    path = Path(cache_path)
    meta = {"version": CACHE_VERSION, "max_fonts": 20, "min_fonts": 10}
    cached: GlyphSet | None = None
    if path.exists() and not rebuild:
        try:
            cached, cached_meta = GlyphSet.load(path)
        except (OSError, ValueError, KeyError):
            cached = None  # unreadable or from an older layout: render anew
        else:
            if cached_meta != meta:
                cached = None
    if cached is None or not set(names) <= set(cached.scripts_rendered):
        todo = set(names) | (set(cached.scripts_rendered) if cached is not None else set())
        cached = render_glyphs(todo, max_fonts_per_class=20, min_fonts_per_class=10, progress=progress)
        cached.save(path, meta)
    if set(cached.scripts_rendered) == set(names):
        return cached
    picked = cached.subset(cached.classes_of(names))
    picked.scripts_rendered = names
    return picked
