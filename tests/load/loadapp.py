"""The app the load test serves: ``webapp.create_app()`` plus one yardstick route, POST
/seed-lpush, shaped like the seed's demo route (``get_json``, one LPUSH through the redis-py
client, ``jsonify``). POST /prodcons must cost no more than it: validation, a job record and
the enqueue still in one round trip."""

from __future__ import annotations

import json
import uuid

from flask import Flask, jsonify, request

from webapp import create_app as create_web_app
from webapp import state


def create_app() -> Flask:
    app = create_web_app()
    client = state(app).rq.client

    @app.post("/seed-lpush")
    def seed_lpush() -> tuple[object, int]:
        data = request.get_json()
        job_id = uuid.uuid4().hex
        client.lpush("seed:queue", json.dumps({"id": job_id, **data}))
        return jsonify(job_id=job_id), 202

    return app
