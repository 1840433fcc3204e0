"""A Redis Cluster of three masters on free loopback ports, started by the test
(``redis-server --cluster-enabled yes`` x3, then ``redis-cli --cluster create``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from redisq.backend.embedded import RedisServer, free_port


class ClusterSet:
    def __init__(self, root: Path, masters: int = 3, appendfsync: str = "everysec") -> None:
        """``appendfsync="always"``: a SIGKILLed node loses no acknowledged write."""
        self.root = root
        self.nodes = [RedisServer(
            root / f"node{i}", port=free_port(), appendfsync=appendfsync,
            extra_args=("--cluster-enabled", "yes",
                        "--cluster-config-file", str(root / f"node{i}" / "nodes.conf"),
                        # The bus port defaults to port + 10000, which a free port may exceed.
                        "--cluster-port", str(free_port()),
                        # A node that is down is noticed within a second, and the others keep
                        # serving their own slots meanwhile (no replicas here to fail over to).
                        "--cluster-node-timeout", "1000",
                        "--cluster-require-full-coverage", "no"))
            for i in range(masters)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{hosts}"

    def start(self) -> ClusterSet:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
        if cli is None:
            raise RuntimeError("redis-cli (or valkey-cli) is needed to create a cluster")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-yes"], check=True, capture_output=True, timeout=20)
        self.wait_ok()
        return self

    def wait_ok(self, timeout_s: float = 8.0) -> None:
        """Until every node says ``cluster_state:ok`` and knows every other node."""
        deadline = time.monotonic() + timeout_s
        while not all(self._ok(n) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok")
            time.sleep(0.05)

    def _ok(self, node: RedisServer) -> bool:
        client = node.client()
        try:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text and f"cluster_known_nodes:{len(self.nodes)}" in text
        except redis.RedisError:
            return False
        finally:
            client.close()

    def node_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot."""
        client = self.nodes[0].client()
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        finally:
            client.close()
        raise LookupError(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.resume()
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
