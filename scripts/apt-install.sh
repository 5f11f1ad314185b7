#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not installed yet (shared by
# install-fonts.sh and install-browser.sh).
#
#   bash scripts/apt-install.sh WHO PACKAGE...      # WHO prefixes the messages
#
# Idempotent and quiet: exits 0 at once when every package is installed; otherwise runs `apt-get update`
# only if apt has no package lists yet or cannot find a package, then installs the missing ones without
# recommends, as root or through sudo. Exits 1, saying why, when that is not possible.
set -euo pipefail

who="$1"
shift
packages=("$@")
[[ ${#packages[@]} -eq 0 ]] && exit 0

# One dpkg-query for all (it prints nothing for packages it has never heard of).
mapfile -t installed < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null |
    awk '$2 == "installed" { print $1 }' | sort -u)
mapfile -t missing < <(comm -23 <(printf '%s\n' "${packages[@]}" | sort -u) <(printf '%s\n' "${installed[@]}"))
[[ ${#missing[@]} -eq 0 || -z "${missing[0]}" ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: ${missing[*]} missing and there is no apt-get here; install them by hand" >&2
    exit 1
fi
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "$who: ${#missing[@]} package(s) missing and this is not root (no sudo either)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_quiet=(-q -o Dpkg::Use-Pty=0)
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

echo "$who: installing ${#missing[@]} package(s): ${missing[*]}" >&2
"${as_root[@]}" apt-get "${apt_quiet[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
