#!/usr/bin/env bash
# Load test: gunicorn + a worker + siege on loopback; see siege_load.py. About two minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python tests/load/siege_load.py "$@"
