"""A master, two replicas and three sentinels on free loopback ports, started by the test.
Two replicas, so that after a failover the new master still has one (durable enqueue waits
for a replica)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from redisq.server import RedisServer, find_server_binary, free_port


class SentinelSet:
    def __init__(self, root: Path, down_after_ms: int = 300) -> None:
        self.root = root
        # No 5 s diskless-sync delay (Redis 7 default): the replica syncs at once.
        self.master = RedisServer(root / "master", port=free_port(), appendfsync="always",
                                  extra_args=("--repl-diskless-sync-delay", "0"))
        self.replicas = [RedisServer(root / f"replica{i}", port=free_port(), appendfsync="always")
                         for i in range(2)]
        self.down_after_ms = down_after_ms
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/mymaster/0"

    def start(self) -> SentinelSet:
        self.master.start()
        for replica in self.replicas:
            replica.extra_args = ("--replicaof", "127.0.0.1", str(self.master.port),
                                  "--repl-diskless-sync-delay", "0")
            replica.start()
        deadline = time.monotonic() + 5
        for replica in self.replicas:
            while replica.client().info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("replica did not sync")
                time.sleep(0.05)
        binary = find_server_binary()
        for i, port in enumerate(self.sentinel_ports):
            conf = self.root / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel resolve-hostnames no\n"
                f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds mymaster {self.down_after_ms}\n"
                "sentinel failover-timeout mymaster 3000\n"
                "sentinel parallel-syncs mymaster 1\n")
            self.sentinels.append(subprocess.Popen(
                [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            deadline = time.monotonic() + 5
            while True:
                try:
                    if len(client.execute_command("SENTINEL", "REPLICAS", "mymaster")) == 2:
                        break
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sentinel {port} did not see the replica")
                time.sleep(0.05)
        return self

    def force_failover(self) -> None:
        """SENTINEL FAILOVER: promote a replica now, without waiting for agreement."""
        deadline = time.monotonic() + 3
        while True:
            try:
                redis.Redis(port=self.sentinel_ports[0], socket_timeout=1).execute_command(
                    "SENTINEL", "FAILOVER", "mymaster")
                return
            except redis.ResponseError as exc:  # e.g. INPROG: already failing over
                if "INPROG" in str(exc) or time.monotonic() > deadline:
                    return
                time.sleep(0.1)

    def master_port(self) -> int:
        client = redis.Redis(port=self.sentinel_ports[0], socket_timeout=1)
        _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return int(port)

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for srv in (self.master, *self.replicas):
            srv.kill()
        shutil.rmtree(self.root, ignore_errors=True)
