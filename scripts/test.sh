#!/usr/bin/env bash
# Run the whole test suite in the repository's virtual environment (created if needed).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/bootstrap.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
