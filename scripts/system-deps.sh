#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those that are missing.
# redis-server: real-server tests (the `embedded` extra's valkey-server is the fallback);
# siege: load tests; chromium + chromium-driver: the dashboard browser test.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v siege >/dev/null || need+=(siege)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: missing ${need[*]} and cannot apt-get here; install them" >&2
  # redis-server has a pip fallback (the embedded extra); the others fail their tests loudly.
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The machine's own Redis must keep running: install the binary without starting services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
