#!/usr/bin/env bash
# Creates bench/.venv-peers and installs the peer libraries into it (idempotent: re-running
# only installs what is missing). The peers are never dependencies of redisq itself.
#
#   bash bench/setup_peers.sh
#   bench/.venv-peers/bin/python bench/peers.py
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv-peers/bin/python ]; then
    "$PY" -m venv .venv-peers
    .venv-peers/bin/python -m pip install -q --upgrade pip
fi
.venv-peers/bin/python -m pip install -q \
    redis hiredis huey "dramatiq[redis]" saq arq "celery[redis]" rq
.venv-peers/bin/python - <<'PY'
from importlib.metadata import version
print("peers venv ready:", ", ".join(
    f"{p} {version(p)}" for p in ("redis", "hiredis", "huey", "dramatiq", "saq", "arq", "celery", "rq")))
PY
