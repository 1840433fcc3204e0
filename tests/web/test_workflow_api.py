"""``POST /prodcons`` with a chain or group body: built by name from JSON, validated like a
single job (400 JSON errors, nothing queued), run by a worker."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from redisq import App
from redisq.worker.prodcons import Worker
from tests.web.test_api import nothing_enqueued


def test_chain_body_runs_in_order(client: FlaskClient, rq: App, worker: Worker) -> None:
    res = client.post("/prodcons", json={"chain": [{"task": "web.add", "args": [1, 2]},
                                                   {"task": "web.add", "args": [10]}]})
    assert res.status_code == 202, res.get_json()
    body = res.get_json()
    assert body["job_ids"] == [f"{body['chain_id']}-0", f"{body['chain_id']}-1"]
    assert rq.job(body["job_ids"][-1]).result(5) == 13
    assert client.get(body["status_url"]).get_json()["result"] == 13


def test_group_body_with_a_callback(client: FlaskClient, rq: App, worker: Worker) -> None:
    res = client.post("/prodcons", json={
        "group": [{"task": "web.add", "args": [i, i]} for i in range(5)],
        "then": {"task": "web.add", "args": [[100]]}, "on_failure": "skip"})
    assert res.status_code == 202, res.get_json()
    body = res.get_json()
    assert len(body["job_ids"]) == 5 and body["callback_id"]
    cb = rq.job(body["callback_id"], "default")  # web.add(results, [100])
    assert cb is not None and cb.result(5) == [0, 2, 4, 6, 8, 100]


def test_chain_body_ending_with_a_chord(client: FlaskClient, rq: App, worker: Worker) -> None:
    res = client.post("/prodcons", json={"chain": [
        {"task": "web.add", "args": [1, 2]},
        {"group": [{"task": "web.add", "args": [10]}, {"task": "web.add", "args": [20]}],
         "then": {"task": "web.add", "args": [[0]]}}]})
    assert res.status_code == 202, res.get_json()
    chain_id = res.get_json()["chain_id"]
    assert res.get_json()["group_id"] == f"{chain_id}-1"
    cb = rq.job(f"{chain_id}-1-callback", "default")
    assert cb is not None and cb.result(5) == [13, 23, 0]


@pytest.mark.parametrize(("body", "message"), [
    ({"chain": []}, "must not be empty"),
    ({"chain": [{"task": "web.nope"}]}, "chain[0]: unknown task 'web.nope'"),
    ({"chain": [{"task": "web.add", "args": [1, 2]}, {"task": "web.add", "args": [1, 2]}]},
     "bad chain"),  # the second step cannot take the first's result as well
    ({"chain": ["web.add"]}, "chain[0]: a signature is an object"),
    ({"chain": [{"task": "web.add", "args": [1, 2], "queue": "elsewhere"}]}, "queue 'elsewhere'"),
    ({"group": [{"task": "web.add", "args": [1, 2]}], "on_failure": "maybe",
      "then": {"task": "web.add", "args": [1]}}, "on_failure"),
    ({"group": [{"task": "web.add", "args": [1, 2]}], "then": {"task": 3}}, "then: a signature"),
    ({"group": [], "chain": []}, "do not go with"),
    ({"chain": [{"task": "web.add"}], "task": "web.add"}, "do not go with"),
    ({"group": {"task": "web.add"}}, "field 'group' must be a list"),
    ({"chain": [{"task": "web.add", "args": [1, 2]}, {"group": []}]}, "chain[1]: a final group"),
    ({"chain": [{"task": "web.add", "args": [1, 2]}, {"group": [{"task": "web.nope"}]}]},
     "chain[1].group[0]: unknown task"),
    ({"chain": [{"task": "web.add", "args": [1, 2]},
                {"group": [{"task": "web.add"}], "then": {"task": "web.add"},
                 "on_failure": "never"}]}, "on_failure is"),
])
def test_bad_workflow_bodies_are_400_and_queue_nothing(client: FlaskClient, rq: App, body: dict,
                                                       message: str) -> None:
    res = client.post("/prodcons", json=body)
    assert res.status_code == 400 and res.mimetype == "application/json"
    assert message in res.get_json()["error"], res.get_json()
    assert nothing_enqueued(rq)


def test_dashboard_snapshot_shows_groups_in_progress(client: FlaskClient, rq: App) -> None:
    body = client.post("/prodcons", json={"group": [{"task": "web.add", "args": [1, 2]}] * 3,
                                          "then": {"task": "web.add", "args": [[0]]}}).get_json()
    snap = client.get("/api/snapshot").get_json()
    assert snap["workflows"]["groups_active"] == 1
    (g,) = snap["workflows"]["groups"]
    assert (g["id"], g["done"], g["total"]) == (body["group_id"], 0, 3)


def test_metrics_count_groups_in_progress(client: FlaskClient, rq: App) -> None:
    client.post("/prodcons", json={"group": [{"task": "web.add", "args": [1, 2]}] * 2,
                                   "then": {"task": "web.add", "args": [[0]]}})
    text = client.get("/metrics").get_data(as_text=True)
    assert "redisq_workflow_groups_active 1.0" in text
    assert "redisq_workflow_awaited_jobs 0.0" in text
