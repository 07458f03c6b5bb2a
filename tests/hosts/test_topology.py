"""The topology itself (tests/hosts/topology.py): every host runs what compose runs for its
service, passes compose's healthcheck from inside, and the limits per address count the
shopper's address on the far side of HAProxy, over HTTPS, ``wss://`` and the TCP door."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from redis import Redis

from devstack.deployment import container_command
from devstack.loadbalancer import COMPOSE_DIR
from devstack.procfile import Shape, command

from .compose import compose, service_command
from .topology import APP_HOSTS, COMPOSE_MAXCONN, LIMITS, Topology, volumes

pytestmark = pytest.mark.hosts


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_each_host_ran_its_compose_services_command_and_is_the_procfile_line_it_became(topology: Topology) -> None:
    for host, service in APP_HOSTS.items():
        child = topology.children[host]

        assert topology.launched[host] == service_command(service) == container_command(service), host
        assert child.pid in topology.network.processes(host), f"{host} runs outside its namespace"
        # python -m devstack.proc replaced itself with the procfile's line for the environment compose gives.
        assert _cmdline(child.pid) == command(service, Shape.from_environ(topology.envs[host])), host
    # The one-shot jobs too; alertmanager-config writes into its volume, a directory here.
    assert topology.launched["migrate"] == service_command("migrate")
    volume = str(volumes(topology.scratch)["/var/lib/flashsale/alertmanager"])
    job = service_command("alertmanager-config")
    assert [part.replace("/var/lib/flashsale/alertmanager", volume) for part in job] == topology.launched[
        "alertmanager-config"
    ]


def test_each_host_has_its_own_name_and_passes_compose_s_healthcheck_from_inside(topology: Topology) -> None:
    for host in APP_HOSTS:
        named = subprocess.run([*topology.network.enter(topology.children[host].pid), "hostname"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        probed = topology.probe(host)

        assert named.stdout.strip() == host
        assert probed.returncode == 0, f"{host}: {probed.stdout}{probed.stderr}"


def test_redis_runs_with_compose_s_options_on_its_own_host(topology: Topology) -> None:
    assert topology.redis is not None and topology.redis.process is not None
    options = service_command("redis")[1:]
    argv = [str(part) for part in topology.redis.process.args]  # type: ignore[union-attr]

    for name, value in zip(options[::2], options[1::2], strict=True):
        assert argv[argv.index(name) + 1] == value, name
    assert topology.redis.process.pid in topology.network.processes("redis")


PLACEMENT = re.compile(
    r"^\s*(#|(server|server-template|bind|errorfile|resolvers|nameserver|hold|accepted_payload_size)\b)"
)


def _without_placement(config: str) -> list[str]:
    """A HAProxy configuration less what says where things are (servers, binds, files) and
    its comments."""
    return [line for line in config.splitlines() if line.strip() and not PLACEMENT.match(line)]


def test_haproxy_runs_compose_s_configuration_but_for_where_its_servers_and_files_are(topology: Topology) -> None:
    assert topology.haproxy is not None
    running = (topology.haproxy.config_dir / "haproxy.cfg").read_text()
    shipped = (COMPOSE_DIR / "haproxy.cfg").read_text()
    # Its one number that may differ: maxconn, lowered to this machine's open-file limit.
    assert f"    maxconn {COMPOSE_MAXCONN}\n" in shipped
    assert f"    maxconn {topology.haproxy.maxconn}\n" in running and topology.haproxy.maxconn <= COMPOSE_MAXCONN
    running = running.replace(f"    maxconn {topology.haproxy.maxconn}\n", f"    maxconn {COMPOSE_MAXCONN}\n", 1)

    assert _without_placement(running) == _without_placement(shipped)
    assert "ssl crt" in running and f"{topology.shop_address}:8443" in running
    assert compose()["services"]["haproxy"]["ports"][1].endswith(":8443")


def test_the_limits_per_address_count_each_shopper_behind_haproxy(topology: Topology) -> None:
    sale = topology.sale("limits", 5)
    [(_, token)] = topology.shoppers(1)
    first, second = topology.shopper_addresses[1:3]
    socket_cap, door_cap = int(LIMITS["WS_MAX_CONNECTIONS_PER_IP"]), int(LIMITS["TCP_MAX_CONNECTIONS_PER_IP"])
    login_limit = int(LIMITS["LOGIN_THROTTLE_IP"].split("/")[0])

    found = topology.shoppers_program(
        "limits", "--sale", str(sale), "--token", token, "--sources", f"{first},{second}",
        "--login-tries", str(login_limit + 1), "--socket-cap", str(socket_cap), "--door-cap", str(door_cap),
    ).result(timeout=120)  # fmt: skip

    assert found["logins_first"] == [400] * login_limit + [429]
    assert found["logins_second"] == [400]
    with Redis(host=topology.address("redis"), port=6379, db=2, decode_responses=True) as cache:
        counted = sorted(key.rsplit(":", 1)[1] for key in cache.scan_iter("throttle:login:ip:*"))
    assert counted == sorted([first, second])  # the shoppers' addresses, never HAProxy's
    assert found["sockets_first"] == ["hello"] * socket_cap + ["closed 1013"]
    assert found["sockets_second"] == ["hello"]
    assert found["door_first"][:door_cap] == ["PONG"] * door_cap
    assert re.fullmatch(rf"0x7f .*too many connections from {re.escape(first)}.*", found["door_first"][door_cap])
    assert found["door_second"] == ["PONG"]
    assert found["door_purchase"]["status"] == "SUCCESS", found["door_purchase"]
