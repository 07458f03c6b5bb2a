"""Where the CPU went during a timed window, read from ``/proc``.

Each group is a process tree (granian and its workers, PostgreSQL and its backends, ...);
a tree's time includes children it already reaped (``cutime``/``cstime``), so short-lived
PostgreSQL backends are not lost. ``other`` is what the machine spent outside every group
and the load generator: other people's work on a shared machine, the noise of a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces; everything after its ')' is split safely.
    return raw[raw.rindex(")") + 2 :].split()


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        table[int(entry.name)] = (int(fields[1]), ticks / _TICK)
    return table


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return (total - idle) / _TICK, total / _TICK


@dataclass(frozen=True)
class CpuSnapshot:
    groups: dict[str, float]
    machine_busy: float
    machine_total: float


class CpuMeter:
    """CPU seconds per named process tree between two snapshots."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots

    def snapshot(self) -> CpuSnapshot:
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            children.setdefault(parent, []).append(pid)
        groups: dict[str, float] = {}
        for name, root in self.roots.items():
            seconds, stack = 0.0, [root]
            while stack:
                pid = stack.pop()
                if pid in table:
                    seconds += table[pid][1]
                    stack.extend(children.get(pid, []))
            groups[name] = seconds
        busy, total = _machine_busy_seconds()
        return CpuSnapshot(groups=groups, machine_busy=busy, machine_total=total)

    @staticmethod
    def spent(before: CpuSnapshot, after: CpuSnapshot, *, wall_s: float, loadgen_s: float) -> dict[str, float]:
        """Cores used on average per group over ``wall_s`` (1.0 = one core all the time),
        with the load generator and ``other`` (outside every group)."""
        if wall_s <= 0:
            return {}
        used = {name: max(0.0, after.groups[name] - before.groups.get(name, 0.0)) for name in after.groups}
        machine = after.machine_busy - before.machine_busy
        cores = {name: seconds / wall_s for name, seconds in used.items()}
        cores["loadgen"] = loadgen_s / wall_s
        cores["other"] = max(0.0, machine - sum(used.values()) - loadgen_s) / wall_s
        cores["idle"] = max(0.0, (after.machine_total - before.machine_total) - machine) / wall_s
        return {name: round(value, 2) for name, value in cores.items()}
