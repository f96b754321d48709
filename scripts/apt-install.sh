#!/usr/bin/env bash
# Install Debian packages for the tests unless the program is already there:
#   scripts/apt-install.sh <program path> <package> [package ...]
# Used by install-browser.sh (chromium) and install-nginx.sh (nginx): nothing is ever
# downloaded from outside Debian's archive.
set -euo pipefail

PROGRAM="$1"
shift

if [ -x "$PROGRAM" ]; then
    echo "present: $PROGRAM"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "$PROGRAM is missing and this is not root: run 'apt-get install -y $*' as root" >&2
        exit 1
    fi
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "$@"
echo "installed: $PROGRAM"
