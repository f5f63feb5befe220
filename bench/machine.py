"""What this machine and its processes are doing, from Linux /proc, and the facts a benchmark report names.

* ``machine_busy_seconds`` -- busy CPU time of the whole machine so far (all cores);
* ``process_table`` / ``tree_cpu_seconds`` / ``tree_rss_mib`` -- CPU time and memory of a process together with
  all its descendants (the embedded milvus-lite runs as a child of the Face API, the ML service has workers);
* ``status_kib`` -- one memory figure of one process (VmRSS, VmHWM);
* ``cores`` / ``cpu_name`` / ``machine_facts`` -- the machine and the library versions a run happened on;
* ``command_line`` -- how a run was started, for its report.

Without /proc every measurement is None (unknown), never zero.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float | None:
    """Busy CPU time of the whole machine so far, summed over cores (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / _CLK_TCK


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, utime + stime in seconds) of every live process (Linux /proc; empty without it)."""
    table: dict[int, tuple[int, float]] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return table
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return table


def _tree(pid: int, table: dict[int, tuple[int, float]]) -> list[int]:
    """`pid` and all its descendants in `table`."""
    children: dict[int, list[int]] = {}
    for child, (ppid, _cpu) in table.items():
        children.setdefault(ppid, []).append(child)
    found, stack = [], [pid]
    while stack:  # a tree: each pid is visited once
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, ()))
    return found


def tree_cpu_seconds(pid: int, table: dict[int, tuple[int, float]] | None = None) -> float | None:
    """CPU time (user + system) of a process and its live descendants so far, or None when it is not there."""
    table = process_table() if table is None else table
    if pid not in table:
        return None
    return sum(table[p][1] for p in _tree(pid, table) if p in table)


def status_kib(pid: int | str, key: str = "VmRSS") -> int | None:
    """One memory line (KiB) of /proc/<pid>/status ("self" for this process); None when there is no such process,
    0 when it has no such line (a zombie holds no memory)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return 0


def tree_rss_mib(pid: int, table: dict[int, tuple[int, float]] | None = None) -> tuple[float, float] | None:
    """(RSS of the process and all its descendants, RSS of the process alone) in MiB, or None once it is gone."""
    own = status_kib(pid)
    if own is None:
        return None
    tree = _tree(pid, process_table() if table is None else table)
    return sum(status_kib(p) or 0 for p in tree) / 1024, own / 1024


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def revision() -> str | None:
    """The project's git commit, marked when the work tree has changes the commit does not hold."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty=+local changes"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def memory_gib() -> float | None:
    kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                break
    except OSError:
        pass
    return None if kib is None else round(kib / 1024**2, 1)


def machine_facts() -> dict[str, Any]:
    """The machine, the revision and the library versions a benchmark ran on (for its report)."""
    return {
        "revision": revision(),
        "cores": cores(),
        "cpu": cpu_name(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": package_version("onnxruntime"),
        "insightface": package_version("insightface"),
        "opencv": package_version("opencv-python-headless"),
        "httpx": package_version("httpx"),
    }


def command_line(command: str, argv: Sequence[str]) -> str:
    """`command` with the run's arguments `argv`, absolute paths made relative to the working directory or cut to
    their names (no machine paths in reports)."""
    parts = []
    for arg in argv:
        path = Path(arg)
        if path.is_absolute():
            try:
                arg = str(path.relative_to(Path.cwd()))
            except ValueError:
                arg = "<" + path.name + ">"
        parts.append(shlex.quote(arg))
    return " ".join([command, *parts])
