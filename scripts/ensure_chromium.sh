#!/usr/bin/env bash
# Make Debian's Chromium available for the JupyterLab browser test (tests/ui).
# Playwright's own browser download does not work offline; we drive /usr/bin/chromium.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser test (apt-get, about a minute)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped"
else
  echo "note: /usr/bin/chromium is missing and this is not root; the browser test will be skipped."
  echo "      Install it with: sudo apt-get install -y chromium"
fi
exit 0
