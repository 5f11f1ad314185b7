#!/usr/bin/env bash
# Install what the playing-card image set needs (learngene/datasets/cards.py): KDE's card decks
# (kdegames-card-data-kf5: 16 SVG deck styles, about 9 MB) and rsvg-convert (librsvg2-bin) to rasterise them.
#
#   bash scripts/install-cards.sh        # or: make cards
#
# Idempotent, quiet and fast when both are installed (scripts/apt-install.sh).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/apt-install.sh" install-cards kdegames-card-data-kf5 librsvg2-bin
command -v rsvg-convert >/dev/null
test -d /usr/share/carddecks
