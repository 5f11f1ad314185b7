"""The glyph image set: script definitions, rendering and filtering on a few real fonts, the cache.

Rendering uses only DejaVu (fonts-dejavu-core, on nearly every Debian machine) plus fonts the tests build with
fontTools: a clone of DejaVu Sans under another name, a font that draws every letter as one box, and an all-caps
font. The filters must drop the last three for the right scripts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from learngene.data import TaskDataset
from learngene.datasets import (
    BASE_SCRIPTS,
    NOVEL_SCRIPTS,
    OPEN_WORLD_SCRIPTS,
    SCRIPTS,
    GlyphSet,
    load_glyphs,
    render_glyphs,
)
from learngene.datasets import glyphs as G

DEJAVU = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
LETTERS = SCRIPTS["latin_upper"] + SCRIPTS["latin_lower"] + SCRIPTS["digits"]


def _find_font(name: str) -> Path:
    for root in ("/usr/share/fonts", "/usr/local/share/fonts"):
        hits = sorted(Path(root).rglob(name)) if Path(root).is_dir() else []
        if hits:
            return hits[0]
    pytest.fail(f"{name} not found: install fonts-dejavu-core (bash scripts/install-fonts.sh installs it)")


def _rename(font, family: str) -> None:
    for rec in font["name"].names:
        if rec.nameID in (1, 4, 16):
            rec.string = family
        elif rec.nameID == 6:
            rec.string = family.replace(" ", "")


def _subset(src: Path, chars: str):
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(src)
    sub = subset.Subsetter()
    sub.populate(unicodes=[ord(c) for c in chars])
    sub.subset(font)
    return font


def _box_font(path: Path, family: str, chars: str) -> None:
    """A font whose cmap sends every character to one and the same box glyph (a placeholder font)."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    pen = TTGlyphPen(None)
    pen.moveTo((100, 0))
    pen.lineTo((100, 700))
    pen.lineTo((500, 700))
    pen.lineTo((500, 0))
    pen.closePath()
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "box"])
    fb.setupCharacterMap({ord(c): "box" for c in chars})
    fb.setupGlyf({".notdef": TTGlyphPen(None).glyph(), "box": pen.glyph()})
    fb.setupHorizontalMetrics({".notdef": (600, 0), "box": (600, 100)})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2()
    fb.setupPost()
    fb.save(str(path))


@pytest.fixture(scope="module")
def font_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fonts")
    for name in DEJAVU:
        shutil.copy(_find_font(name), d / name)
    clone = _subset(_find_font("DejaVuSans.ttf"), LETTERS)
    _rename(clone, "Clone Sans")
    clone.save(str(d / "CloneSans.ttf"))
    caps = _subset(_find_font("DejaVuSerif.ttf"), LETTERS)
    for table in caps["cmap"].tables:
        if table.isUnicode():
            for c in SCRIPTS["latin_lower"]:
                table.cmap[ord(c)] = table.cmap[ord(c.upper())]
    _rename(caps, "Caps Only")
    caps.save(str(d / "CapsOnly.ttf"))
    _box_font(d / "TofuBox.ttf", "Tofu Box", LETTERS)
    return d


@pytest.fixture(scope="module")
def small(font_dir) -> GlyphSet:
    return render_glyphs(["digits", "latin_upper", "latin_lower"], font_dirs=[font_dir], max_fonts_per_class=20,
                         min_fonts_per_class=2)  # fmt: skip


# -- script definitions -------------------------------------------------------------------------------------------


def test_script_definitions():
    assert set(BASE_SCRIPTS) | set(OPEN_WORLD_SCRIPTS) | set(NOVEL_SCRIPTS) == set(SCRIPTS)
    assert len(set(BASE_SCRIPTS) | set(OPEN_WORLD_SCRIPTS) | set(NOVEL_SCRIPTS)) == (
        len(BASE_SCRIPTS) + len(OPEN_WORLD_SCRIPTS) + len(NOVEL_SCRIPTS)
    ), "the three splits must be disjoint"
    assert SCRIPTS["latin_upper"] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ" and SCRIPTS["digits"] == "0123456789"
    assert len(SCRIPTS["hangul"]) == 400 and SCRIPTS["hangul"][:3] == "가각간"
    assert len(SCRIPTS["cjk"]) == 600 and SCRIPTS["cjk"][0] == "一"
    assert all("\u4e00" <= c <= "\u9fff" for c in SCRIPTS["cjk"])
    assert len(SCRIPTS["greek_upper"]) == 24 and len(SCRIPTS["cyrillic_lower"]) == 32
    seen: set[str] = set()
    for name, chars in SCRIPTS.items():
        assert len(chars) >= 10, name
        assert len(set(chars)) == len(chars), f"{name} repeats a character"
        assert not seen & set(chars), f"{name} shares characters with another script"
        seen |= set(chars)


# -- rendering real fonts ------------------------------------------------------------------------------------------


def test_render_shapes_and_names(small):
    n = len(small)
    assert small.x.dtype == np.uint8 and small.x.shape == (n, 32, 32)
    assert small.labels.dtype == np.int64 and small.labels.shape == (n,)
    assert len(small.fonts) == n
    assert small.scripts() == ["latin_upper", "latin_lower", "digits"]
    assert small.num_classes == len(small.class_names) == len(small.class_script)
    assert 50 <= small.num_classes <= 62
    for name, script in zip(small.class_names, small.class_script):
        s, ch = name.split(":")
        assert s == script and ch in SCRIPTS[script]
    # Each class: one sample per font, within the limits; images white on black, full contrast, in the box.
    for c in range(small.num_classes):
        idx = small.samples_of(c)
        fonts = [small.fonts[i] for i in idx]
        assert 2 <= len(idx) <= 20 and len(set(fonts)) == len(fonts)
    assert np.all(small.x.max(axis=(1, 2)) == 255)
    border = np.concatenate([small.x[:, :2].reshape(n, -1), small.x[:, -2:].reshape(n, -1)], axis=1)
    assert np.all(border == 0), "the ink must fit 28 px, centred in 32"


def test_render_filters_the_crafted_fonts(small):
    used = {s: {small.fonts[i] for i in small.samples_of(small.classes_of(s))} for s in small.scripts()}
    everywhere = set().union(*used.values())
    assert "Tofu Box" not in everywhere, "a font drawing every letter alike must be dropped"
    for s in used:
        assert len(used[s] & {"DejaVu Sans", "Clone Sans"}) == 1, f"{s}: a clone must be dropped"
    # Caps Only is DejaVu Serif with capitals at the lower-case code points: a clone in the capitals, dropped
    # for the lower case it draws as capitals (where DejaVu Serif itself stays).
    assert len(used["latin_upper"] & {"DejaVu Serif", "Caps Only"}) == 1
    assert "Caps Only" not in used["latin_lower"]
    assert {"DejaVu Serif", "DejaVu Sans Mono"} <= used["latin_lower"]


def test_one_face_per_family(font_dir):
    faces = G._index_faces([font_dir], {ord(c) for c in LETTERS})
    assert sum(f.family == "DejaVu Sans" for f in faces) == 2  # Regular and Bold
    chosen = G._one_face_per_family(faces)
    by_family = {f.family: f for f in chosen}
    assert len(by_family) == len(chosen)
    assert Path(by_family["DejaVu Sans"].path).name == "DejaVuSans.ttf", "the Regular face, not the Bold"


def test_render_is_deterministic(font_dir):
    a = render_glyphs(["digits"], font_dirs=[font_dir], min_fonts_per_class=2)
    b = render_glyphs("digits", font_dirs=[font_dir], min_fonts_per_class=2)
    assert a.class_names == b.class_names and a.fonts == b.fonts and np.array_equal(a.x, b.x)


def test_render_refuses_bad_arguments(font_dir):
    with pytest.raises(ValueError, match="unknown scripts"):
        render_glyphs(["klingon"], font_dirs=[font_dir])
    with pytest.raises(ValueError):
        render_glyphs(["digits"], font_dirs=[font_dir], max_fonts_per_class=3, min_fonts_per_class=5)


def test_too_few_fonts_gives_no_classes(font_dir):
    gs = render_glyphs(["digits"], font_dirs=[font_dir], min_fonts_per_class=15)
    assert gs.num_classes == 0 and len(gs) == 0 and gs.scripts_rendered == ["digits"]


# -- filters on crafted drawings -----------------------------------------------------------------------------------


def _crafted(n_fonts: int, n_chars: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(F, C, 1024) drawings: one random blob shape per character, each font a slightly noisy copy."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((n_chars, 8, 8)) > 0.5).repeat(4, axis=1).repeat(4, axis=2).reshape(n_chars, -1)
    x = protos[None].astype(np.float32) * 0.9 + rng.normal(0, 0.08, (n_fonts, n_chars, 1024)).astype(np.float32)
    return np.clip(x, 0, 1), np.ones((n_fonts, n_chars), dtype=bool)


def test_outliers_flag_only_the_far_drawing():
    x, ok = _crafted(12, 5)
    x[3, 2] = 1.0 - x[3, 2]  # font 3 draws character 2 as something else entirely
    far = G._outliers(x, ok)
    assert far[3, 2] and far.sum() == 1


def test_font_self_check_finds_duplicates_and_alike_fonts():
    x, ok = _crafted(1, 20)
    names = [f"g{i}" for i in range(20)]
    assert G._font_self_check(x[0], ok[0], names)[0] == 0.0
    same_glyph = names[:]
    same_glyph[5] = same_glyph[6] = "shared"
    assert G._font_self_check(x[0], ok[0], same_glyph)[0] == pytest.approx(2 / 20)
    boxes = np.repeat(x[0, :1], 20, axis=0)
    assert G._font_self_check(boxes, ok[0], names)[0] == 1.0


def test_filter_script_drops_clone_symbol_and_uses_far_drawings_last():
    x, ok = _crafted(8, 12)
    x[5] = x[1] + 0.001  # a clone of font 1
    x[6] = np.repeat(x[6, :1], 12, axis=0)  # every character drawn alike
    x[2, 4] = 1.0 - x[2, 4]  # one far drawing
    names = [[f"f{f}c{c}" for c in range(12)] for f in range(8)]
    pick = G._filter_script("test", x, ok, names, None, min_fonts=3, max_fonts=5)
    assert pick.dropped == {5: "clone", 6: "duplicates"}
    used = set(np.concatenate(pick.rows).tolist())
    assert 5 not in used and 6 not in used
    assert all(len(r) == 5 for r in pick.rows)
    assert 2 not in pick.rows[4].tolist(), "a far drawing is used only where others are lacking"
    wide = G._filter_script("test", x, ok, names, None, min_fonts=3, max_fonts=20)
    assert 2 in wide.rows[4].tolist() and len(wide.rows[4]) == 6


def test_caps_in_lower_flags_fonts_drawing_capitals():
    upper, ok = _crafted(6, 10, seed=1)
    lower, _ = _crafted(6, 10, seed=2)
    lower[4] = upper[4]
    assert G._caps_in_lower(lower, ok, upper, ok).tolist() == [False] * 4 + [True, False]


# -- the GlyphSet API and the cache ---------------------------------------------------------------------------------


def _synthetic(scripts=("digits", "hebrew"), per_class: int = 3) -> GlyphSet:
    names, script_of, labels, fonts = [], [], [], []
    for s in scripts:
        for ch in SCRIPTS[s][:4]:
            labels += [len(names)] * per_class
            fonts += [f"font{i}" for i in range(per_class)]
            names.append(f"{s}:{ch}")
            script_of.append(s)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (len(labels), 32, 32), dtype=np.uint8)
    files = {f"font{i}": f"/fonts/f{i}.ttf#0" for i in range(per_class)}
    return GlyphSet(x, np.array(labels), names, script_of, fonts, files)


def test_classes_and_task_dataset():
    gs = _synthetic()
    assert gs.scripts() == ["digits", "hebrew"]
    assert gs.classes_of("hebrew") == [4, 5, 6, 7] and gs.classes_of(["digits"]) == [0, 1, 2, 3]
    assert gs.classes_of(NOVEL_SCRIPTS) == []
    with pytest.raises(ValueError, match="unknown scripts"):
        gs.classes_of(["latin"])
    assert set(gs.classes_of(BASE_SCRIPTS)).isdisjoint(gs.classes_of(OPEN_WORLD_SCRIPTS))

    ds = gs.to_task_dataset([5, 1])
    assert isinstance(ds, TaskDataset)
    assert ds.class_names == [gs.class_names[5], gs.class_names[1]]
    assert ds.x.shape == (6, 32, 32, 1) and sorted(ds.y.tolist()) == [0, 0, 0, 1, 1, 1]
    i = gs.samples_of(1)[0]
    assert np.array_equal(ds.x[ds.y == 1][0, ..., 0], gs.x[i])

    support = [gs.samples_of(5)[0], gs.samples_of(1)[0]]
    sub = gs.to_task_dataset([5, 1], sample_index=support)
    assert sub.y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="not in class_ids"):
        gs.to_task_dataset([5, 1], sample_index=[gs.samples_of(0)[0]])
    with pytest.raises(ValueError):
        gs.to_task_dataset([5, 5])


def test_save_load_round_trip_without_pickle(tmp_path):
    gs = _synthetic()
    path = tmp_path / "g.npz"
    gs.save(path, {"version": 7})
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        assert z["class_names"].dtype.kind == "U"
    back, meta = GlyphSet.load(path)
    assert meta == {"version": 7}
    assert np.array_equal(back.x, gs.x) and np.array_equal(back.labels, gs.labels)
    assert back.class_names == gs.class_names and back.class_script == gs.class_script
    assert back.fonts == gs.fonts and back.font_files == gs.font_files
    assert back.scripts_rendered == gs.scripts_rendered


def test_load_glyphs_caches_and_grows(tmp_path, monkeypatch):
    calls = []

    def fake_render(scripts, **kwargs):
        calls.append(sorted(scripts))
        return _synthetic(tuple(s for s in SCRIPTS if s in set(scripts)))

    monkeypatch.setattr(G, "render_glyphs", fake_render)
    path = tmp_path / "sub" / "glyphs.npz"
    first = load_glyphs(path, scripts=["digits"])
    assert calls == [["digits"]] and path.exists() and first.scripts() == ["digits"]
    again = load_glyphs(path, scripts=["digits"])
    assert calls == [["digits"]], "the cache must be read, not re-rendered"
    assert np.array_equal(again.x, first.x) and again.class_names == first.class_names
    both = load_glyphs(path, scripts=["hebrew", "digits"])
    assert calls[-1] == ["digits", "hebrew"] and both.scripts() == ["digits", "hebrew"]
    only_hebrew = load_glyphs(path, scripts=["hebrew"])
    assert len(calls) == 2 and only_hebrew.scripts() == ["hebrew"] and only_hebrew.class_names[0].startswith("hebrew:")
    load_glyphs(path, scripts=["hebrew"], rebuild=True)
    assert len(calls) == 3
    # A cache from another version of the module is rebuilt.
    gs, meta = GlyphSet.load(path)
    gs.save(path, {**meta, "version": meta["version"] + 1})
    load_glyphs(path, scripts=["hebrew"])
    assert len(calls) == 4
