#!/usr/bin/env bash
# Install everything the tests need, then run them all. Usage: bash scripts/test.sh [pytest args]
# Idempotent: on a machine that already has everything it only runs the tests. Leaves the
# checkout as it found it: test output goes to temporary folders or git-ignored ones
# (js/node_modules/, test-artifacts/); the README's screenshots in docs/images/ are rewritten only
# with JUPYTER_IMAGINE_SCREENSHOTS=docs/images.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

echo "==> Python packages"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"

# From Debian: Chromium and the fonts the widgets are drawn with (the emoji font: 🔄 ✅ ❌) for
# the browser tests (never `playwright install`), and PostgreSQL for the team store's tests (they
# start their own server in a temporary folder; the package's default cluster is not used). Each
# package is checked on its own; apt-get update runs only when something is missing.
missing=()
if [ -d tests/browser ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  for pkg in fonts-liberation fonts-noto-color-emoji; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> From Debian: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# JS unit tests (vitest) when the widgets' JS has a package.json.
if [ -f js/package.json ]; then
  echo "==> JS packages and unit tests"
  if ! command -v npm >/dev/null 2>&1; then
    echo "the widgets' JS tests need Node.js 20+ with npm (e.g. from nodesource); none found" >&2
    exit 1
  fi
  # npm ci only: it installs exactly the lock and fails (loudly) when the lock is out of step with
  # package.json, instead of rewriting the lock in the checkout as npm install would.
  (cd js && npm ci --no-audit --no-fund && npx vitest run)
fi

# Two workers (JUPYTER_IMAGINE_TEST_WORKERS, default 2; 0 runs in this process), a test file
# each at a time: the slow tests are real processes (kernels, JupyterLab and Chromium, the
# sandbox drawing pictures), so one file's waits overlap another's work.
echo "==> pytest"
set +e
"$PYTHON" -m pytest -n "${JUPYTER_IMAGINE_TEST_WORKERS:-2}" --dist loadfile "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
