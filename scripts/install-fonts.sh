#!/usr/bin/env bash
# Install the Debian font packages the glyph data set is rendered from (learngene/datasets/glyphs.py).
#
#   bash scripts/install-fonts.sh                 # the list in data/glyph-font-packages.txt
#   GLYPH_FONT_LIST=my-list.txt bash scripts/install-fonts.sh
#
# Idempotent and quiet: does nothing (exit 0) when every package is installed (scripts/apt-install.sh).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
list="${GLYPH_FONT_LIST:-$repo_root/data/glyph-font-packages.txt}"
if [[ ! -r "$list" ]]; then
    echo "install-fonts: package list not found: $list (set GLYPH_FONT_LIST)" >&2
    exit 1
fi

# One package name a line; blank lines and # comments are allowed.
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$' | sort -u)
if [[ ${#packages[@]} -eq 0 ]]; then
    exit 0
fi

bash "$repo_root/scripts/apt-install.sh" install-fonts "${packages[@]}"
