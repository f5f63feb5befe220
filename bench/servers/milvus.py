"""Milvus servers on 127.0.0.1, for the storage tests and `python -m bench.milvus`.

- `MilvusLiteServer`: the `milvus-lite server` command (pure-Python Milvus over gRPC) on a data folder.
- `MilvusStandaloneServer`: the Milvus 2.3.5 standalone binary shipped by the `milvus` PyPI package.

Ports are picked free at start, including the ones Milvus 2.3.5 would otherwise take fixed (etcd 2379/2380,
metrics 9091), so two test runs on one machine do not collide.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bench.servers.process import HOST, ServerProcess, free_ports, port_open


class MilvusLiteServer(ServerProcess):
    """`milvus-lite server` on `data_dir`. Keeps its port across stop()/start(), so a restart serves the same URI."""

    name = "milvus-lite server"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(Path(data_dir).with_name(Path(data_dir).name + ".log"))
        self.data_dir = Path(data_dir)
        self.port = port or free_ports(1)[0]

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        self._spawn([*args, "--host", HOST, "--port", str(self.port)])
        self._wait_until(lambda: port_open(self.port), timeout)


class MilvusStandaloneServer(ServerProcess):
    """Milvus 2.3.5 standalone (the `milvus` PyPI package's binary) with everything under `base_dir`.

    Only the proxy port (`port`, the gRPC endpoint clients use) needs to be known; every other port is picked
    free. The embedded etcd ignores Milvus's own port settings (it always takes 2379/2380), so it gets a
    config file of its own. `settings` overrides milvus.yaml keys that exist in the package's template, by
    dotted name, e.g. {"queryCoord.checkInterval": 100}.
    """

    name = "milvus 2.3.5 standalone"

    def __init__(self, base_dir: Path, port: int | None = None, settings: dict[str, object] | None = None) -> None:
        super().__init__(Path(base_dir) / "logs" / "milvus-run.log")
        self.base_dir = Path(base_dir).resolve()
        self.port = port or free_ports(1)[0]
        self.metrics_port = 0
        self.settings = dict(settings or {})

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        import milvus  # the `milvus` dev dependency; imported here so the module loads without it

        config = milvus.MilvusServerConfig(data_dir=str(self.base_dir))
        port_keys = sorted(k for k in config.configurable_items if k.endswith("_port") and k != "proxy_port")
        ports = free_ports(len(port_keys) + 3)
        config.update(proxy_port=self.port, **dict(zip(port_keys, ports, strict=False)))
        etcd_client, etcd_peer, self.metrics_port = ports[len(port_keys) :]
        config.update(etcd_port=etcd_client)
        for key, value in self.settings.items():
            config.set(key, value)
        config.resolve()  # writes configs/milvus.yaml, creates logs/ and data/
        self._configure_embedded_etcd(etcd_client, etcd_peer)
        self._check_settings_applied()
        # Unpacks the binary and its libraries into base_dir/bin (skipped when already there).
        milvus._initialize_data_files(str(self.base_dir))

        bin_dir = self.base_dir / "bin"
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.metrics_port),
            MILVUS_RUN_DIR=str(self.base_dir / "run"),
            LD_LIBRARY_PATH=":".join(p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p),
        )
        # Milvus reads configs/milvus.yaml relative to its working directory.
        self._spawn([str(bin_dir / "milvus"), "run", "standalone"], cwd=self.base_dir, env=env)
        self._wait_until(self._healthy, timeout)

    def _configure_embedded_etcd(self, client_port: int, peer_port: int) -> None:
        etcd_config = self.base_dir / "configs" / "embed-etcd.yaml"
        client, peer = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
        etcd_config.write_text(
            "name: default\n"
            f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        milvus_yaml = self.base_dir / "configs" / "milvus.yaml"
        text = milvus_yaml.read_text()
        # `etcd.config.path` is not in the package's template: add it under the top-level `etcd:` key.
        patched = text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_config}\n", 1)
        if patched == text:
            raise RuntimeError(f"no top-level 'etcd:' section in {milvus_yaml}")
        milvus_yaml.write_text(patched)

    def _check_settings_applied(self) -> None:
        import yaml

        config = yaml.safe_load((self.base_dir / "configs" / "milvus.yaml").read_text())
        for key, value in self.settings.items():
            node = config
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node != value:
                raise ValueError(f"milvus.yaml has no setting {key!r} to override (template lacks it?)")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/healthz", timeout=2) as resp:
                return b"OK" in resp.read()
        except (OSError, urllib.error.URLError):
            return False
