#!/usr/bin/env bash
# Installs the non-Rust Workload API clients that tests/workload_interop.rs
# runs against a real agent, under target/interop (nothing system-wide):
#
#   target/interop/venv   py-spiffe and PyJWT, pinned in python/requirements.txt
#   target/interop/node   @grpc/grpc-js and @grpc/proto-loader, from node/package-lock.json
#
# Idempotent and quiet: each half is redone only when its pinned files, this
# script or the interpreter changed (a stamp holds their hash), and prints one
# line when it installs, nothing otherwise. Safe to run concurrently (a lock).
#
# Environment: MAYFLY_INTEROP_DIR (default <repo>/target/interop),
# MAYFLY_INTEROP_PYTHON (default python3), MAYFLY_INTEROP_NODE (default node).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dest="${MAYFLY_INTEROP_DIR:-$repo/target/interop}"
python="${MAYFLY_INTEROP_PYTHON:-python3}"
node="${MAYFLY_INTEROP_NODE:-node}"

for tool in "$python" "$node" npm flock sha256sum; do
    if ! command -v "$tool" >/dev/null; then
        echo "tests/interop/setup.sh: $tool is not installed" >&2
        exit 1
    fi
done

mkdir -p "$dest"
exec 9>"$dest/.setup.lock"
flock 9

fingerprint() {
    # The files' contents and the interpreter's version and location.
    { cat "$@"; cat "$here/setup.sh"; } | sha256sum | cut -d' ' -f1
}

install_python() {
    local venv="$dest/venv" requirements="$here/python/requirements.txt"
    local interpreter
    interpreter="$("$python" -c 'import os, sys; print(sys.version, os.path.realpath(sys.executable))')"
    local want
    want="$(fingerprint "$requirements" <(echo "$interpreter"))"
    if [[ -x "$venv/bin/python" && "$(cat "$venv/.mayfly-stamp" 2>/dev/null)" == "$want" ]]; then
        return
    fi
    echo "interop: installing py-spiffe into ${venv#"$repo"/}"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: --requirement "$requirements"
    echo "$want" >"$venv/.mayfly-stamp"
}

install_node() {
    local prefix="$dest/node"
    local want
    want="$(fingerprint "$here/node/package.json" "$here/node/package-lock.json" \
        <("$node" --version))"
    if [[ -d "$prefix/node_modules/@grpc/grpc-js" &&
        "$(cat "$prefix/.mayfly-stamp" 2>/dev/null)" == "$want" ]]; then
        return
    fi
    echo "interop: installing @grpc/grpc-js into ${prefix#"$repo"/}"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    cp "$here/node/package.json" "$here/node/package-lock.json" "$prefix/"
    # No install scripts: the two packages are plain JavaScript.
    npm ci --prefix "$prefix" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
    echo "$want" >"$prefix/.mayfly-stamp"
}

install_python
install_node
