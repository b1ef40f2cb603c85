#!/usr/bin/env bash
# Make sure Debian's chromium and chromium-driver are installed (the console's browser tests,
# tests/test_console_browser.py, drive them through Selenium): install them when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi
echo "ensure_chromium: installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
