#!/usr/bin/env bash
# Chart tests: renders the three Helm charts with the real Helm engine,
# validates the manifests and runs the plugin's offline check on the rendered
# configuration. Also checks the Dockerfile and the deploy/ examples.
#
#   tests/charts/run.sh [pytest arguments]
#
# Uses a virtualenv in target/chart-venv (created once, reinstalled when
# requirements.txt changes) and the plugin binary built from this tree
# (`cargo build --locked`, honouring CARGO_TARGET_DIR): never a binary from
# elsewhere, so the charts are checked against the code they ship with.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/chart-venv"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "tests/charts needs Python 3.11 or newer (set PYTHON=...)" >&2
    exit 1
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing the chart test requirements into $venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

(cd "$root" && cargo build --locked --quiet --bin teleport-plugin)
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export CARGO_BIN="$target/debug/teleport-plugin"

cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
