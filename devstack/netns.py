"""Hosts on one Linux machine without a container engine: a network namespace per host, all
on one bridge of the run's own (the multi-host test, ``tests/hosts/``).

Each host is a namespace ``fs-<run>-<name>`` with loopback up and one veth (``eth0``) into
the bridge ``fsbr<run>``, where ``<run>`` is the process id of the run that made them. Two
subnets share the bridge: the stack's private /24, where every server host has an address,
and a public /24 where the shoppers live and the balancer has a second address; a shopper
has no route to the private one, so the balancer is all of the stack a shopper can reach,
as behind a container engine's published ports. The bridge holds ``.1`` of both: the
machine itself (the operator's side, where a test's own servers listen).

A host's process runs ``ip netns exec <namespace>``, then ``unshare --uts --mount`` gives it
a host name (Celery's ``%h``, a drain consumer's name) and an empty ``/tmp`` of its own, as a
container has, and then its command line, unchanged. ``/etc/netns/<namespace>/hosts``, which
``ip netns exec`` mounts over ``/etc/hosts``, names every host (``redis``, ``postgres``,
``web1``, ...), as Docker's DNS names a compose service.

Names carry the run's process id, so runs side by side never collide; what a run that died
left behind is removed by the next (``clean_stale``). Linux only, as root (``refusal`` says
why not otherwise). This module imports nothing of the application.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "fs"
NETNS_ETC = Path("/etc/netns")
INTERFACE = "eth0"
# Run inside the namespace by sh: $0 is the host's name, "$@" its command line.
HOST_SHELL = 'hostname "$0" && mount -t tmpfs -o mode=1777 tmpfs /tmp && exec "$@"'


class NetnsError(RuntimeError):
    """A namespace, link or address could not be made; the message carries ``ip``'s words."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip <args>``; raises ``NetnsError`` with its output when it fails and ``check``."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {(result.stderr or result.stdout).strip()}")
    return result


def refusal() -> str | None:
    """Why this machine cannot run hosts as network namespaces, or None when it can (it
    makes a namespace and a bridge, and removes them)."""
    if sys.platform != "linux":
        return f"network namespaces are Linux's; this is {sys.platform}"
    if os.geteuid() != 0:
        return "creating network namespaces (ip netns add) needs root; this run is not root"
    for program, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux")):
        if shutil.which(program) is None:
            return f"the {program} program is missing (Debian package {package}; make deps installs it)"
    probe, bridge = f"{PREFIX}-{os.getpid()}-probe", f"{PREFIX}pr{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add was refused: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    made = ip("link", "add", bridge, "type", "bridge", check=False)
    if made.returncode != 0:
        return f"ip link add ... type bridge was refused: {made.stderr.strip()}"
    ip("link", "del", bridge, check=False)
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a run that had this process id before died: its names are ours now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale() -> list[str]:
    """Remove what runs that are gone left behind: their namespaces (and any process still
    in one), bridges, links and ``/etc/netns`` entries. Returns what it removed."""
    removed: list[str] = []
    namespaces = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    for namespace in namespaces:
        found = re.fullmatch(rf"{PREFIX}-(\d+)-[\w-]+", namespace)
        if found and not _alive(int(found[1])):
            for pid in ip("netns", "pids", namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            ip("netns", "del", namespace, check=False)
            removed.append(namespace)
    for line in ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        found = re.fullmatch(rf"{PREFIX}(?:br|pr)?(\d+)(?:h\d+)?", name)
        if found and not _alive(int(found[1])):
            ip("link", "del", name, check=False)
            removed.append(name)
    if NETNS_ETC.is_dir():
        for entry in NETNS_ETC.iterdir():
            found = re.fullmatch(rf"{PREFIX}-(\d+)-[\w-]+", entry.name)
            if found and not _alive(int(found[1])):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
    return removed


def _taken() -> list[ipaddress.IPv4Network]:
    """Networks this machine already routes or holds an address in."""
    taken: list[ipaddress.IPv4Network] = []
    for line in ip("-4", "-o", "addr", "show").stdout.splitlines():
        found = re.search(r"inet (\S+)", line)
        if found:
            taken.append(ipaddress.IPv4Interface(found[1]).network)
    for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if first not in ("default", "broadcast", "local"):
                taken.append(ipaddress.IPv4Network(first, strict=False))
    return taken


def free_subnets(run: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Two /24s of 10.0.0.0/8 (the stack's, the shoppers') that nothing on this machine uses,
    chosen from the run's id so that runs side by side pick different ones."""
    taken = _taken()
    for step in range(4096):
        slot = (run + step * 7919) % (128 * 127)
        second, third = 128 + slot // 127, (slot % 127) * 2
        pair = (
            ipaddress.IPv4Network(f"10.{second}.{third}.0/24"),
            ipaddress.IPv4Network(f"10.{second}.{third + 1}.0/24"),
        )
        if not any(mine.overlaps(other) for mine in pair for other in taken):
            return pair
    raise NetnsError("no free pair of /24s in 10.0.0.0/8")


@dataclass(frozen=True)
class HostPlan:
    """One host to make. ``aliases``: more names for it in every host's ``/etc/hosts`` (the
    compose service names: ``redis``, ``postgres``); ``public``: addresses on the shoppers'
    subnet, the first named ``public_aliases``; ``private``: an address on the stack's."""

    name: str
    aliases: tuple[str, ...] = ()
    public: int = 0
    public_aliases: tuple[str, ...] = ()
    private: bool = True


@dataclass
class Host:
    name: str
    namespace: str
    veth: str
    address: str  # on the stack's subnet ("" for a host with none)
    public_addresses: tuple[str, ...] = ()


@dataclass
class Network:
    """The bridge, the namespaces and their addresses of one run (``create``; ``destroy``
    removes all of it, and is safe to call on a half-made network)."""

    plans: Sequence[HostPlan]
    run: int = field(default_factory=os.getpid)
    # More names for the machine itself (the bridge's .1): servers a test runs on its side.
    operator_aliases: tuple[str, ...] = ("operator",)
    hosts: dict[str, Host] = field(default_factory=dict)
    private: ipaddress.IPv4Network = field(init=False)
    public: ipaddress.IPv4Network = field(init=False)

    def __post_init__(self) -> None:
        self.private, self.public = free_subnets(self.run)
        publics = iter(self.public.hosts())
        for _ in range(9):  # .1-.9: the bridge's and a margin
            next(publics)
        for index, plan in enumerate(self.plans):
            self.hosts[plan.name] = Host(
                name=plan.name,
                namespace=f"{PREFIX}-{self.run}-{plan.name}",
                veth=f"{PREFIX}{self.run}h{index}",
                address=str(self.private[10 + index]) if plan.private else "",
                public_addresses=tuple(str(next(publics)) for _ in range(plan.public)),
            )

    @property
    def bridge(self) -> str:
        return f"{PREFIX}br{self.run}"

    @property
    def operator(self) -> str:
        """The machine's own address on the stack's subnet (the bridge's)."""
        return str(self.private[1])

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def hosts_file(self) -> str:
        lines = ["127.0.0.1 localhost", f"{self.operator} {' '.join(self.operator_aliases)}"]
        for plan in self.plans:
            host = self.hosts[plan.name]
            if host.address:
                lines.append(" ".join([host.address, plan.name, *plan.aliases]))
            if host.public_addresses and plan.public_aliases:
                lines.append(" ".join([host.public_addresses[0], *plan.public_aliases]))
        return "\n".join(lines) + "\n"

    def create(self) -> Network:
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.operator}/{self.private.prefixlen}", "dev", self.bridge)
            ip("addr", "add", f"{self.public[1]}/{self.public.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            hosts_file = self.hosts_file()
            for host in self.hosts.values():
                ip("netns", "add", host.namespace)
                ip("link", "add", host.veth, "type", "veth", "peer", "name", INTERFACE, "netns", host.namespace)
                ip("link", "set", host.veth, "master", self.bridge, "up")
                ip("-n", host.namespace, "link", "set", "lo", "up")
                for address, network in self._addresses(host):
                    ip("-n", host.namespace, "addr", "add", f"{address}/{network.prefixlen}", "dev", INTERFACE)
                ip("-n", host.namespace, "link", "set", INTERFACE, "up")
                etc = NETNS_ETC / host.namespace
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "hosts").write_text(hosts_file, encoding="utf-8")
        except BaseException:
            self.destroy()
            raise
        return self

    def _addresses(self, host: Host) -> Iterable[tuple[str, ipaddress.IPv4Network]]:
        if host.address:
            yield host.address, self.private
        for address in host.public_addresses:
            yield address, self.public

    def prefix(self, name: str) -> list[str]:
        """What goes before a command line to run it on host ``name``: its namespace, its host
        name, an empty /tmp of its own."""
        host = self.hosts[name]
        return ["ip", "netns", "exec", host.namespace, "unshare", "--uts", "--mount", "sh", "-c", HOST_SHELL, name]

    @staticmethod
    def enter(pid: int) -> list[str]:
        """What goes before a command line to run it beside process ``pid``, in its host's
        namespaces (network, mounts, host name) and working directory, as ``docker exec`` does
        in a container."""
        return ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--wd", "--"]

    def cut(self, name: str) -> None:
        """Pull the host's cable: its interface down (nothing reaches it, it reaches nothing;
        its connections stay open, waiting)."""
        ip("-n", self.hosts[name].namespace, "link", "set", INTERFACE, "down")

    def restore(self, name: str) -> None:
        """Plug it back in: the interface up (the kernel puts its subnets' routes back)."""
        ip("-n", self.hosts[name].namespace, "link", "set", INTERFACE, "up")

    def processes(self, name: str) -> list[int]:
        """Process ids running in the host's network namespace."""
        listed = ip("netns", "pids", self.hosts[name].namespace, check=False).stdout.split()
        return [int(pid) for pid in listed]

    def destroy(self) -> None:
        for host in self.hosts.values():
            ip("netns", "del", host.namespace, check=False)  # its veth goes with it
            shutil.rmtree(NETNS_ETC / host.namespace, ignore_errors=True)
        ip("link", "del", self.bridge, check=False)
