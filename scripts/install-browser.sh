#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/e2e/test_web_*.py).
# The tests drive it with Playwright for Python through `executable_path`; we never let
# Playwright download a browser of its own (`playwright install` is not used anywhere).
set -euo pipefail

CHROMIUM="${TOKENRELAY_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    echo "chromium present: $CHROMIUM"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "chromium is missing and this is not root: run 'apt-get install -y chromium' as root" >&2
        exit 1
    fi
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-noto-cjk
echo "installed: $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
