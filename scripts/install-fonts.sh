#!/usr/bin/env bash
# Install the Debian font packages the glyph data set is rendered from (DESIGN section 5).
#
#   bash scripts/install-fonts.sh                 # the list in ../shared/data/glyph-font-packages.txt
#   GLYPH_FONT_LIST=my-list.txt bash scripts/install-fonts.sh
#
# Idempotent and quiet: does nothing (exit 0) when every package is installed; otherwise runs `apt-get update`
# only if apt has no package lists yet or cannot find a package, then installs the missing ones without
# recommends. Runs as root, or through sudo when that is available.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
list="${GLYPH_FONT_LIST:-$repo_root/../shared/data/glyph-font-packages.txt}"
if [[ ! -r "$list" ]]; then
    echo "install-fonts: package list not found: $list (set GLYPH_FONT_LIST)" >&2
    exit 1
fi

# One package name a line; blank lines and # comments are allowed.
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$' | sort -u)
if [[ ${#packages[@]} -eq 0 ]]; then
    exit 0
fi

# One dpkg-query for all (it prints nothing for packages it has never heard of).
mapfile -t installed < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null |
    awk '$2 == "installed" { print $1 }' | sort -u)
mapfile -t missing < <(comm -23 <(printf '%s\n' "${packages[@]}") <(printf '%s\n' "${installed[@]}"))
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-fonts: ${#missing[@]} font packages are missing and this is not root (no sudo either)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_quiet=(-q -o Dpkg::Use-Pty=0)

# apt-get update only when needed: no package lists yet, or some package unknown to the lists we have.
need_update=0
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    need_update=1
else
    for p in "${missing[@]}"; do
        if ! apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then
            need_update=1
            break
        fi
    done
fi
if [[ $need_update -eq 1 ]]; then
    "${as_root[@]}" apt-get "${apt_quiet[@]}" update >/dev/null
fi

echo "install-fonts: installing ${#missing[@]} font packages" >&2
"${as_root[@]}" apt-get "${apt_quiet[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
