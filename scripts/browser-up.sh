#!/usr/bin/env bash
# Makes the browser for the UI test (tests/integration/test_ui.py) available, and does
# nothing that is done already: installs Debian's chromium and chromium-driver
# (/usr/bin/chromium, /usr/bin/chromedriver) where missing. No browser is downloaded by
# a test tool: the network here reaches only package registries. Run as root (or with
# sudo available), e.g. `make browser`.
set -euo pipefail
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    echo "browser-up: installing ${missing[*]} (about 30 s)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "browser-up: $(chromium --version 2>/dev/null), $(chromedriver --version | cut -d' ' -f1-2)"
