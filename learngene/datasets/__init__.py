"""Data sets built on the machine for tests and benchmarks (glyphs: rendered from Debian fonts, see glyphs.py)."""
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
    "BASE_SCRIPTS",
    "NOVEL_SCRIPTS",
    "OPEN_WORLD_SCRIPTS",
    "SCRIPTS",
    "GlyphSet",
    "load_glyphs",
    "pattern_images",
    "render_glyphs",
]
