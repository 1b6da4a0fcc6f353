#!/usr/bin/env bash
# Install workerd, the open-source Workers runtime, at the version package.json pins, into
# tests/conformance/node_modules (npm ci from package-lock.json). Quick when already there;
# fails loudly when it cannot install, because the conformance suite cannot run without it.
set -euo pipefail
cd "$(dirname "$0")"

pinned=$(sed -n 's/.*"workerd": *"\([^"]*\)".*/\1/p' package.json)
installed() {
  [ -x node_modules/.bin/workerd ] || return 1
  [ "$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' node_modules/workerd/package.json 2>/dev/null)" = "$pinned" ] || return 1
  node_modules/.bin/workerd --version >/dev/null 2>&1
}

if installed; then
  echo "workerd $pinned already installed"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
  else
    echo "install-workerd.sh: npm is required to install workerd $pinned (install Node.js and npm)" >&2
    exit 1
  fi
fi

npm ci --no-audit --no-fund --loglevel=error
if ! installed; then
  echo "install-workerd.sh: npm ci finished but workerd $pinned does not run from node_modules/.bin/workerd" >&2
  exit 1
fi
echo "installed workerd $pinned: $(node_modules/.bin/workerd --version)"
