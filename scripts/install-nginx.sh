#!/usr/bin/env bash
# Install Debian's nginx for the load-balancer test (tests/e2e/test_nginx.py).
# The test runs nginx itself, as a child process with its own prefix and configuration in a
# temporary directory, on a free port: nothing here configures or starts a system nginx.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" "${TOKENRELAY_NGINX:-/usr/sbin/nginx}" nginx
