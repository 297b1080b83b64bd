#!/usr/bin/env bash
# Installs the Python client libraries the tests drive Postern with (from PyPI) into
# target/pylib, when missing. Idempotent: no network when they are there.
#
#   scripts/ensure-pylibs.sh     prints the directory to put on PYTHONPATH
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

DIR="${POSTERN_TEST_PYLIB:-$POSTERN_ROOT/target/pylib}"
# name==version, one per line: pinned so a test run is repeatable.
PACKAGES=("PyMySQL==1.1.1")

if PYTHONPATH="$DIR" python3 -c 'import pymysql' 2>/dev/null; then
    printf '%s\n' "$DIR"
    exit 0
fi
mkdir -p "$DIR"
log "ensure-pylibs: installing ${PACKAGES[*]} into $DIR"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$DIR" "${PACKAGES[@]}" >&2 ||
    die "pip could not install ${PACKAGES[*]} (is python3-pip installed?)"
PYTHONPATH="$DIR" python3 -c 'import pymysql' || die "pymysql still not importable from $DIR"
printf '%s\n' "$DIR"
