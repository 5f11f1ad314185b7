#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's browser test (tests/e2e/test_browser.py drives it with
# Playwright; Playwright's own browser download needs a network the test machines do not have).
#
#   bash scripts/install-browser.sh        # or: make browser
#
# Idempotent, quiet and fast when chromium and chromium-driver are installed (scripts/apt-install.sh).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/apt-install.sh" install-browser chromium chromium-driver
test -x /usr/bin/chromium
