"""A Sentinel deployment of real processes on free loopback ports, started by the test: one
master, replicas (``--replicaof``; two by default) and three sentinels (``redis-server
--sentinel`` with a generated config).

Two replicas, so that after a master dies the new master still has one: durable enqueue
(``WAIT 1``) and ``min-replicas-to-write 1`` keep working on the promoted master.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from redisq.backend.embedded import RedisServer, find_server_binary, free_port

SERVICE = "mymaster"


def _myid(port: int) -> str:
    return f"{port:040x}"


def _sentinel_conf(port: int, peers: list[int], master_port: int, replica_ports: list[int],
                   down_after_ms: int, failover_timeout_ms: int, quorum: int) -> str:
    lines = [f"port {port}", "bind 127.0.0.1", "daemonize no",
             "sentinel resolve-hostnames no", "sentinel announce-ip 127.0.0.1",
             f"sentinel announce-port {port}", f"sentinel myid {_myid(port)}",
             f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} {quorum}",
             f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
             f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}",
             f"sentinel parallel-syncs {SERVICE} 2"]
    # Known peers and replicas up front: otherwise sentinels learn of each other from hello
    # messages published every 2 s, and the deployment takes that long to be able to fail over.
    lines += [f"sentinel known-sentinel {SERVICE} 127.0.0.1 {p} {_myid(p)}"
              for p in peers if p != port]
    lines += [f"sentinel known-replica {SERVICE} 127.0.0.1 {p}" for p in replica_ports]
    return "\n".join(lines) + "\n"


class SentinelSet:
    """Start with :meth:`start` (then :meth:`wait_ready` before a failover), tear down with
    :meth:`stop`; :attr:`url` is the ``redis+sentinel://`` URL clients use."""

    def __init__(self, root: Path, down_after_ms: int = 500, failover_timeout_ms: int = 2000,
                 replicas: int = 2, min_replicas_to_write: int = 1) -> None:
        self.root = root
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        # No 5 s diskless-sync delay (Redis 7 default): a replica syncs at once. And, as
        # docs/scaling.md advises, a master that has lost its replicas refuses writes (an
        # old master cut off by a failover must not keep taking jobs that will be dropped).
        args = ("--repl-diskless-sync-delay", "0",
                "--min-replicas-to-write", str(min_replicas_to_write),
                "--min-replicas-max-lag", "5")
        self.master = RedisServer(root / "master", port=free_port(), extra_args=args)
        self.replicas = [RedisServer(root / f"replica{i}", port=free_port(), extra_args=args)
                         for i in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self) -> SentinelSet:
        self.master.start()
        for replica in self.replicas:
            replica.extra_args = (*replica.extra_args, "--replicaof", "127.0.0.1",
                                  str(self.master.port))
            replica.start()
        for replica in self.replicas:
            self._wait(lambda r=replica: r.client().info("replication").get(
                "master_link_status") == "up", "a replica to sync")
        binary = find_server_binary()
        for i, port in enumerate(self.sentinel_ports):
            conf = self.root / f"sentinel-{i}.conf"  # sentinels rewrite their config: a file
            conf.write_text(_sentinel_conf(
                port, self.sentinel_ports, self.master.port, [r.port for r in self.replicas],
                self.down_after_ms, self.failover_timeout_ms, quorum=2))
            log = self.root / f"sentinel-{i}.log"
            self.sentinels.append(subprocess.Popen(
                [binary, str(conf), "--sentinel", "--logfile", str(log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        return self

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Wait until each sentinel is linked to the replicas and the other two sentinels:
        only then can they agree the master is down and elect a leader. (A sentinel that
        tried a peer before it listened retries a second later: call this as late as
        possible, after starting the clients.)"""
        for port in self.sentinel_ports:
            self._wait(lambda p=port: self._knows_everyone(p), f"sentinel {port} to see all",
                       timeout_s)

    def _knows_everyone(self, port: int) -> bool:
        """Connected to every replica and both other sentinels (flags without
        ``disconnected`` or ``s_down``)."""
        client = redis.Redis(port=port, socket_timeout=1)
        try:
            replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
        except redis.RedisError:
            return False
        finally:
            client.close()
        flags = [r[b"flags"] for r in replicas] + [o[b"flags"] for o in others]
        return (len(replicas), len(others)) == (len(self.replicas), 2) and set(flags) <= {
            b"slave", b"sentinel"}

    @staticmethod
    def _wait(cond: object, what: str, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def master_port(self) -> int | None:
        """The master's port according to the first sentinel that answers."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return int(addr[1]) if addr else None
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def promoted(self, old_port: int) -> bool:
        """Whether every sentinel names a master other than ``old_port``, and that server
        says it is a master (clients asking any sentinel then land on it)."""
        ports = set()
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                ports.add(int(client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1]))
            except redis.RedisError:
                return False
            finally:
                client.close()
        if len(ports) != 1 or old_port in ports:
            return False
        (new,) = ports
        server = next(s for s in self.servers if s.port == new)
        try:
            return server.client().info("replication").get("role") == "master"
        except redis.RedisError:
            return False

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def demote(self, old_port: int, new_port: int) -> None:
        """Make the old master a replica of the new one: what Sentinel itself does to a
        demoted master that is still alive, but only ~8 s after a switchover (it waits
        4 hello periods for the old master to report its role)."""
        self.server(old_port).client().replicaof("127.0.0.1", new_port)

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: a graceful switchover with the master alive (it is demoted to
        a replica of the promoted one)."""
        deadline = time.monotonic() + 3
        while True:
            try:
                client = redis.Redis(port=self.sentinel_ports[0], socket_timeout=1)
                client.execute_command("SENTINEL", "FAILOVER", SERVICE)
                return
            except redis.ResponseError as exc:  # INPROG / NOGOODSLAVE while settling
                if time.monotonic() > deadline:
                    raise
                if "INPROG" in str(exc):
                    return
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        for srv in self.servers:
            srv.resume()
            srv.kill()
        shutil.rmtree(self.root, ignore_errors=True)
