#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/e2e/test_web_*.py).
# The tests drive it with Playwright for Python through `executable_path`; we never let
# Playwright download a browser of its own (`playwright install` is not used anywhere).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" "${TOKENRELAY_CHROMIUM:-/usr/bin/chromium}" \
    chromium fonts-noto-cjk
