#!/usr/bin/env bash
# Install everything the tests need, then run them all. Usage: bash scripts/test.sh [pytest args]
# Idempotent: on a machine that already has everything it only runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

echo "==> Python packages"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"

# Chromium (Debian's) for the browser tests; never `playwright install`.
if [ -d tests/browser ] && ! command -v chromium >/dev/null 2>&1; then
  echo "==> Chromium from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-liberation fonts-noto-color-emoji >/dev/null
fi

# JS unit tests (vitest) when the widgets' JS has a package.json.
if [ -f js/package.json ]; then
  echo "==> JS packages and unit tests"
  if ! command -v npm >/dev/null 2>&1; then
    echo "the widgets' JS tests need Node.js 20+ with npm (e.g. from nodesource); none found" >&2
    exit 1
  fi
  (cd js && { [ -f package-lock.json ] && npm ci --no-audit --no-fund --silent || npm install --no-audit --no-fund --silent; } && npx vitest run)
fi

echo "==> pytest"
set +e
"$PYTHON" -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
