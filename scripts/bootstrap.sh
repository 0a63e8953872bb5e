#!/usr/bin/env bash
# Create (or refresh) the repository's virtual environment in .venv and install the project.
# Re-runs are cheap: nothing is reinstalled unless requirements.txt or setup.py changed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.densemtl-installed"
wanted="$(cat "$repo/requirements.txt" "$repo/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$repo/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --no-deps -e "$repo"
  echo "$wanted" > "$stamp"
fi
