#!/usr/bin/env bash
# Make Debian's Chromium available for the JupyterLab browser test (tests/ui).
# Playwright's own browser download does not work offline; the test drives /usr/bin/chromium.
# Never fails the build: without Chromium the browser test skips, except in CI (env CI set),
# where it fails and says why.
set -u
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser test (apt-get, about a minute)..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped (or fail in CI)"
  else
    echo "note: $CHROMIUM is missing and this is not root; the browser test will be skipped."
    echo "      Install it with: sudo apt-get install -y chromium"
  fi
fi
if [ -x "$CHROMIUM" ] && ! "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "warning: $CHROMIUM is installed but does not start; the browser test will fail"
fi
exit 0
