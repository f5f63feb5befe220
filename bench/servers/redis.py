"""A Redis server on 127.0.0.1 (Debian's `redis-server`), for the coordination tests and benchmarks.

No persistence (a restart starts empty, as a Redis that lost its data would) and a fixed port across
stop()/start(), so a restart serves the same URL.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.servers.process import HOST, ServerProcess, free_port, port_open


class RedisServer(ServerProcess):
    name = "redis-server"

    def __init__(self, work_dir: Path, port: int | None = None) -> None:
        super().__init__(Path(work_dir) / "redis.log")
        self.work_dir = Path(work_dir)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self._spawn([*args, "--dir", str(self.work_dir)], cwd=self.work_dir)
        self._wait_until(lambda: port_open(self.port), timeout)
