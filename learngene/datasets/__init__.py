"""Data sets built on the machine for tests and benchmarks: glyphs rendered from Debian fonts (glyphs.py),
playing cards rendered from KDE's SVG decks (cards.py)."""
from learngene.datasets.cards import BASE_RANKS, CARDS, NOVEL_RANKS, RANKS, CardSet, load_cards, render_cards
from learngene.datasets.glyphs import (
    BASE_SCRIPTS,
    NOVEL_SCRIPTS,
    OPEN_WORLD_SCRIPTS,
    SCRIPTS,
    GlyphSet,
    load_glyphs,
    render_glyphs,
)
from learngene.datasets.patterns import pattern_images

__all__ = [
    "BASE_RANKS",
    "BASE_SCRIPTS",
    "CARDS",
    "NOVEL_RANKS",
    "NOVEL_SCRIPTS",
    "OPEN_WORLD_SCRIPTS",
    "RANKS",
    "SCRIPTS",
    "CardSet",
    "GlyphSet",
    "load_cards",
    "load_glyphs",
    "pattern_images",
    "render_cards",
    "render_glyphs",
]
