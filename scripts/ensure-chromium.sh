#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium (the browser tests in tests/test_ui.py drive it with
# Playwright; Playwright's own browser download is not reachable here). Installs the `chromium` package with apt-get
# when it is missing; fails loudly when it cannot.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo > /dev/null || { echo "ensure-chromium: $CHROMIUM is missing and I am not root (no sudo)" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "ensure-chromium: installing chromium with apt-get" >&2
$SUDO apt-get update -q > /dev/null || { echo "ensure-chromium: apt-get update failed" >&2; exit 1; }
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core > /dev/null \
  || { echo "ensure-chromium: apt-get install chromium failed" >&2; exit 1; }
[ -x "$CHROMIUM" ] || { echo "ensure-chromium: $CHROMIUM still missing after apt-get install" >&2; exit 1; }
echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed" >&2
