#!/usr/bin/env bash
# The peer libraries live in their own virtual environment, never in the project's.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv-peers/bin/python ] || python3 -m venv .venv-peers
.venv-peers/bin/pip install -q --upgrade pip
.venv-peers/bin/pip install -q "redis[hiredis]" huey "dramatiq[redis]" saq arq "celery[redis]" rq
