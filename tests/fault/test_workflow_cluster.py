"""Workflows on a real Redis Cluster (three masters): a chord whose members are on one node and
whose callback is on another, a chain hopping between them, and a dependency across nodes. Every
Lua step touches one slot (a Cluster refuses anything else with CROSSSLOT), so this passing shows
the state lives where docs/workflows.md says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redisq import App, chain, group
from redisq.backend import keys
from redisq.backend.connection import ConnectionOptions
from tests.support.cluster import ClusterSet
from tests.support.procs import start_worker, stop
from tests.support.wait import wait_until
from tests.support.wf_app import read_log

pytestmark = pytest.mark.slow
FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)


def two_nodes(cluster: ClusterSet) -> tuple[str, str]:
    """Two queue names whose keys live on different nodes."""
    names = [f"q{i}" for i in range(20)]
    first = names[0]
    other = next(q for q in names if cluster.node_of(keys.pending(q)).port
                 != cluster.node_of(keys.pending(first)).port)
    return first, other


def test_chord_chain_and_dependency_across_nodes(cluster: ClusterSet, tmp_path: Path) -> None:
    a, b = two_nodes(cluster)
    runs = tmp_path / "runs.log"
    app = App(cluster.url, options=FAST)
    g = group(app.signature("wf.member", [i], queue=a) for i in range(20)).then(
        app.signature("wf.collect", queue=b)).delay()
    c = chain(app.signature("wf.step", [[], 0], queue=a), app.signature("wf.step", [1], queue=b),
              app.signature("wf.step", [2], queue=a)).delay()
    parent = app.enqueue("wf.member", (100,), queue=a)
    child = app.enqueue("wf.member", (101,), queue=b, depends_on=[parent])
    worker = start_worker(cluster.url, "--app", "tests.support.wf_app:app", "--queues",
                          f"{a},{b}", "--lease-s", "2", RUNS_FILE=str(runs))
    try:
        assert c.result(8) == [0, 1, 2]
        assert g.callback is not None and g.callback.result(5) == 20
        assert child.result(5) == 101
        callbacks = [e for e in read_log(runs) if e[0] == "callback"]
        assert len(callbacks) == 1 and json.loads(callbacks[0][2]) == list(range(20))
        wait_until(lambda: g.status == "succeeded", 3, what="the group's status")
    finally:
        stop(worker)
        app.close()
