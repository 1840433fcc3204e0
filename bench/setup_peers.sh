#!/usr/bin/env bash
# Creates bench/.venv-peers and installs the peer libraries into it (idempotent: re-running
# only installs what is missing). The peers are never dependencies of redisq itself.
#
#   bash bench/setup_peers.sh
#   bench/.venv-peers/bin/python bench/peers.py
#
# Same redis-py for everyone: the peers get the redis-py (and hiredis) version of redisq's venv
# (.venv; REDIS_PY=x.y.z / HIREDIS=x.y.z to choose), so no library is measured on a faster or
# slower client than another (redis-py 5 and 8 differ per command). No single version satisfies
# every pin: redisq needs redis>=7, arq pins redis<6 and kombu (Celery) redis<6.5, both upper
# bounds set before those releases existed, not known incompatibilities. So the peers are
# installed first (pip resolves their pins), then redis-py is set to redisq's version
# regardless of those two caps (pip prints the conflict; compare.py records every version and
# a peer that fails on it shows its error in the table instead of a figure).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
PROJECT_PY=../.venv/bin/python
if [ -z "${REDIS_PY:-}" ] && [ -x "$PROJECT_PY" ]; then
    REDIS_PY=$("$PROJECT_PY" -c 'import redis; print(redis.__version__)')
fi
if [ -z "${HIREDIS:-}" ] && [ -x "$PROJECT_PY" ]; then
    HIREDIS=$("$PROJECT_PY" -c 'from importlib.metadata import version; print(version("hiredis"))' 2>/dev/null || true)
fi
if [ ! -x .venv-peers/bin/python ]; then
    "$PY" -m venv .venv-peers
    .venv-peers/bin/python -m pip install -q --upgrade pip
fi
.venv-peers/bin/python -m pip install -q \
    redis hiredis huey "dramatiq[redis]" saq arq "celery[redis]" rq
if [ -n "${REDIS_PY:-}" ]; then
    # --no-deps: only redis-py (and hiredis) move; pip's resolver would otherwise refuse arq's cap.
    .venv-peers/bin/python -m pip install -q --no-deps "redis==$REDIS_PY" \
        ${HIREDIS:+"hiredis==$HIREDIS"}
fi
.venv-peers/bin/python - <<'PY'
from importlib.metadata import version
print("peers venv ready:", ", ".join(
    f"{p} {version(p)}" for p in ("redis", "hiredis", "huey", "dramatiq", "saq", "arq", "celery", "rq")))
PY
