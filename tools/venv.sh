#!/usr/bin/env bash
# Create (or reuse) a Python virtual environment for one of the project's tools and
# install a requirements file into it. Prints the environment's python on stdout.
#   tools/venv.sh NAME REQUIREMENTS.txt
# The environment lives in `.venv-NAME` at the repository root (ignored by git) and is
# rebuilt only when the requirements file changes.
set -euo pipefail
name=$1
requirements=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$repo/.venv-$name
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    echo "$want" >"$stamp"
fi
echo "$venv/bin/python"
