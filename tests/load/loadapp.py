"""The app the load test serves: ``webapp.create_app()`` plus two yardstick routes: POST
/seed-lpush, shaped like the seed's demo route (``get_json``, one LPUSH through the redis-py
client, ``jsonify``), which POST /prodcons must cost no more than (validation, a job record and
the enqueue still in one round trip); and POST /bare-post, the same JSON POST without Redis,
which shows what the body alone costs beside the bare GET."""

from __future__ import annotations

import json
import uuid

from flask import Flask, jsonify, request

from webapp import create_app as create_web_app
from webapp import state


def create_app() -> Flask:
    app = create_web_app()
    client = state(app).queue_app.client

    @app.post("/seed-lpush")
    def seed_lpush() -> tuple[object, int]:
        data = request.get_json()
        job_id = uuid.uuid4().hex
        client.lpush("seed:queue", json.dumps({"id": job_id, **data}))
        return jsonify(job_id=job_id), 202

    @app.post("/bare-post")
    def bare_post() -> tuple[object, int]:
        # The same JSON POST with no Redis at all: what reading and parsing a body costs.
        data = request.get_json()
        return jsonify(task=data.get("task")), 202

    return app
