"""The playing-card image set: rendering and deck filtering on crafted SVG decks and on a few real ones, the cache.

The crafted decks need only rsvg-convert; the real ones are KDE's. Both come from scripts/install-cards.sh, which
the `installed` fixture runs (a no-op when they are installed), so the tests never skip.
"""
from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest

from learngene.data import TaskDataset
from learngene.datasets import BASE_RANKS, CARDS, NOVEL_RANKS, RANKS, CardSet, load_cards, render_cards
from learngene.datasets import cards as C

ROOT = Path(__file__).resolve().parents[2]
SOME = ("1_spade", "7_club", "queen_heart", "2_diamond")


@pytest.fixture(scope="module")
def installed() -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install-cards.sh")], capture_output=True, text=True)
    assert done.returncode == 0, f"scripts/install-cards.sh failed:\n{done.stderr}"


def _colour(i: int) -> str:
    return f"#{(i * 53) % 256:02x}{(i * 97) % 256:02x}{(i * 151) % 256:02x}"


def _vector_deck(landscape: bool = False, style: int = 0, shift: int = 0) -> str:
    """One <g id=card> per card: a 60x90 white card (90x60 when landscape) with marks unique to the card;
    `style` draws them in other colours and places (another deck), `shift` moves them a pixel or so (a clone)."""
    w, h = (90, 60) if landscape else (60, 90)
    groups = []
    for i, card in enumerate(SOME):
        x = i * 100
        bar_y = 5 if style else h - 15
        groups.append(f'<g id="{card}"><rect x="{x}" y="0" width="{w}" height="{h}" fill="white"/>'
                      f'<circle cx="{x + 20 + 5 * i + shift}" cy="{25 + 10 * i + 15 * style}" r="{8 + 3 * i}" '
                      f'fill="{_colour(i + 3 * style)}"/>'
                      f'<rect x="{x + 5}" y="{bar_y}" width="{10 + 10 * i}" height="8" fill="black"/></g>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{100 * len(SOME)}" height="100">'
            + "".join(groups) + "</svg>")


def _bitmap_deck() -> str:
    """Each card an <image id=card> with an embedded PNG (as konqi-modern and xskat-french are made)."""
    from PIL import Image, ImageDraw

    images = []
    for i, card in enumerate(SOME):
        im = Image.new("RGBA", (36, 54), "white")
        ImageDraw.Draw(im).rectangle((4, 4 + 8 * i, 30, 14 + 8 * i), fill=_colour(i + 7))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        images.append(f'<image id="{card}" x="{i * 40}" y="0" width="36" height="54" '
                      f'xlink:href="data:image/png;base64,{data}"/>')
    return ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="200" '
            'height="60">' + "".join(images) + "</svg>")


@pytest.fixture(scope="module")
def deck_dir(tmp_path_factory, installed) -> Path:
    d = tmp_path_factory.mktemp("carddecks")
    decks = {"svg-a": _vector_deck(), "svg-b": _bitmap_deck(), "svg-c": _vector_deck(style=1),
             "svg-a-copy": _vector_deck(shift=1), "svg-wide": _vector_deck(landscape=True),
             "svg-xskat-german": _vector_deck(style=1, shift=3)}
    for name, text in decks.items():
        (d / name).mkdir()
        (d / name / f"{name}.svg").write_text(text)
    return d


@pytest.fixture(scope="module")
def crafted(deck_dir) -> CardSet:
    return render_cards(24, deck_dir=deck_dir, cards=SOME, min_decks_per_class=2)


# -- the class and rank definitions ---------------------------------------------------------------------------------


def test_card_and_rank_definitions():
    assert len(CARDS) == 52 and len(set(CARDS)) == 52 and "queen_heart" in CARDS and "1_spade" in CARDS
    assert set(BASE_RANKS).isdisjoint(NOVEL_RANKS) and set(BASE_RANKS) | set(NOVEL_RANKS) == set(RANKS)
    assert len(BASE_RANKS) * 4 == 32 and len(NOVEL_RANKS) * 4 == 20


# -- rendering --------------------------------------------------------------------------------------------------------


def test_render_crafted_decks_keeps_the_good_and_says_why_not(crafted):
    assert crafted.class_names == list(SOME)
    assert crafted.x.dtype == np.uint8 and crafted.x.shape == (len(crafted), 24, 24, 3)
    assert sorted(set(crafted.decks)) == ["svg-a", "svg-b", "svg-c"]
    assert crafted.dropped["svg-a-copy"] == "a clone of svg-a"
    assert crafted.dropped["svg-wide"].startswith("only 0/4 cards rendered card-shaped")
    assert "German" in crafted.dropped["svg-xskat-german"]
    assert np.bincount(crafted.labels).tolist() == [3, 3, 3, 3]
    # Cards are taller than wide: the side margins are background grey, the centre is the card.
    assert np.all(crafted.x[:, :, 0] == C.BACKGROUND) and np.all(crafted.x[:, :, -1] == C.BACKGROUND)
    assert np.all(crafted.x[:, 12, 12].astype(int).sum(axis=1) != 3 * C.BACKGROUND)
    # The embedded-bitmap deck is decoded: its four cards differ from one another.
    b = crafted.x[[i for i, d in enumerate(crafted.decks) if d == "svg-b"]].astype(int)
    assert min(np.abs(b[i] - b[j]).sum() for i in range(4) for j in range(i + 1, 4)) > 0


def test_min_decks_per_class_and_deck_choice(deck_dir):
    few = render_cards(16, deck_dir=deck_dir, decks=["svg-a", "svg-b"], cards=SOME, min_decks_per_class=3)
    assert few.num_classes == 0 and len(few) == 0
    two = render_cards(16, deck_dir=deck_dir, decks=["svg-a", "svg-b"], cards=SOME[:2], min_decks_per_class=2)
    assert two.class_names == list(SOME[:2]) and two.decks == ["svg-a", "svg-b"] * 2


def test_render_is_deterministic(deck_dir):
    a = render_cards(16, deck_dir=deck_dir, decks=["svg-a", "svg-b"], cards=SOME[:2], min_decks_per_class=1)
    b = render_cards(16, deck_dir=deck_dir, decks=["svg-a", "svg-b"], cards=SOME[:2], min_decks_per_class=1)
    assert np.array_equal(a.x, b.x) and a.decks == b.decks


def test_real_kde_decks_render(installed):
    files = C.deck_files()
    assert {"svg-standard", "svg-konqi-modern"} <= set(files), "kdegames-card-data-kf5 is not installed"
    cards = render_cards(32, decks=["svg-standard", "svg-konqi-modern"], cards=SOME, min_decks_per_class=2)
    assert cards.class_names == list(SOME) and sorted(set(cards.decks)) == ["svg-konqi-modern", "svg-standard"]
    assert cards.x.shape == (8, 32, 32, 3)
    red = cards.x[cards.samples_of(2)].astype(int)  # the queen of hearts has red ink, the ace of spades none
    black = cards.x[cards.samples_of(0)].astype(int)
    redness = lambda x: ((x[..., 0] - x[..., 2]) > 80).mean()  # noqa: E731
    assert redness(red) > redness(black) + 0.01


# -- the CardSet API and the cache ----------------------------------------------------------------------------------


def _synthetic(per_class: int = 3) -> CardSet:
    names = ["1_club", "2_club", "queen_heart", "5_spade"]
    labels = np.repeat(np.arange(len(names)), per_class)
    x = np.random.default_rng(0).integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    decks = [f"deck{i}" for _ in names for i in range(per_class)]
    return CardSet(x, labels, names, decks, {"svg-x": "why"})


def test_classes_dataset_and_grayscale():
    cs = _synthetic()
    assert cs.classes_of(NOVEL_RANKS) == [1, 3] and cs.classes_of("queen") == [2]
    with pytest.raises(ValueError, match="unknown ranks"):
        cs.classes_of(["ace"])
    assert cs.samples_of([1, 3]).tolist() == [3, 4, 5, 9, 10, 11]
    ds = cs.dataset()
    assert isinstance(ds, TaskDataset) and ds.class_names == cs.class_names and ds.x.shape == (12, 8, 8, 3)
    part = ds.subset(cs.samples_of(cs.classes_of(NOVEL_RANKS)))
    assert part.class_names == ["2_club", "5_spade"] and part.y.tolist() == [0, 0, 0, 1, 1, 1]
    gray = cs.grayscale()
    assert gray.x.shape == (12, 8, 8, 1)
    expected = np.round(cs.x[0, 0, 0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    assert gray.x[0, 0, 0, 0] == expected and gray.grayscale() is gray
    with pytest.raises(ValueError):
        CardSet(cs.x[:, :, :4], cs.labels, cs.class_names, cs.decks)


def test_save_load_round_trip_without_pickle(tmp_path):
    cs = _synthetic()
    path = tmp_path / "c.npz"
    cs.save(path, {"version": 3, "size": 8})
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    back, meta = CardSet.load(path)
    assert meta == {"version": 3, "size": 8}
    assert np.array_equal(back.x, cs.x) and np.array_equal(back.labels, cs.labels)
    assert back.class_names == cs.class_names and back.decks == cs.decks and back.dropped == cs.dropped


def test_load_cards_caches(tmp_path, monkeypatch):
    calls = []

    def fake_render(size, **kwargs):
        calls.append(size)
        return _synthetic()

    monkeypatch.setattr(C, "render_cards", fake_render)
    path = tmp_path / "sub" / "cards.npz"
    first = load_cards(8, cache_path=path)
    assert calls == [8] and path.exists()
    again = load_cards(8, cache_path=path)
    assert calls == [8], "the cache must be read, not re-rendered"
    assert np.array_equal(again.x, first.x) and again.class_names == first.class_names
    load_cards(8, cache_path=path, rebuild=True)
    assert calls == [8, 8]
    load_cards(16, cache_path=path)  # another size in the same file: re-rendered
    assert calls == [8, 8, 16]
