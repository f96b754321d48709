#!/usr/bin/env bash
# Install Debian's nginx for the load-balancer test (tests/e2e/test_nginx.py).
# The test runs nginx itself, as a child process with its own prefix and configuration in a
# temporary directory, on a free port: nothing here configures or starts a system nginx.
set -euo pipefail

NGINX="${TOKENRELAY_NGINX:-/usr/sbin/nginx}"

if [ -x "$NGINX" ]; then
    echo "nginx present: $NGINX"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "nginx is missing and this is not root: run 'apt-get install -y nginx' as root" >&2
        exit 1
    fi
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends nginx
echo "installed: $("$NGINX" -v 2>&1 || echo nginx)"
