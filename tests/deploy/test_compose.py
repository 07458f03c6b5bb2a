"""No Docker engine runs here, so docker-compose.yml and the Dockerfile are checked by
reading them: the services, their images and commands, env, healthchecks and volumes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.certs import certificates_write
from devstack.deployment import PROCESSES, compose_healthcheck, container_command
from devstack.loadbalancer import COMPOSE_CERTIFICATE, COMPOSE_ERROR_DIR, compose_files, haproxy_binary

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ["migrate", "web", "ws", "worker", "beat", "tcp"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_stack_has_its_services(compose: dict) -> None:
    assert {"postgres", "redis", *APP_SERVICES} <= set(compose["services"])


def test_postgres_and_redis_use_pinned_images_volumes_and_healthchecks(compose: dict) -> None:
    postgres, redis = compose["services"]["postgres"], compose["services"]["redis"]
    assert postgres["image"].startswith("postgres:16")
    assert redis["image"].startswith("redis:7")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert redis["healthcheck"]["test"][-1] == "ping"
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert {"postgres-data", "redis-data"} <= set(compose["volumes"])


def test_redis_keeps_an_append_only_file(compose: dict) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_every_app_service_runs_the_one_image_built_from_the_dockerfile(compose: dict) -> None:
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["build"] == ".", name
        assert service["image"] == "flashsale:0.2.0", name
    assert (ROOT / "Dockerfile").read_text().startswith("# One image")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_are_configured_from_the_environment(compose: dict, name: str) -> None:
    env = compose["services"][name]["environment"]
    assert env["DJANGO_SETTINGS_MODULE"] == "flashsale_project.settings.production"
    assert env["DATABASE_URL"].startswith("postgresql://flashsale:") and env["DATABASE_URL"].endswith(
        "@postgres:5432/flashsale"
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    for secret in ("SECRET_KEY", "METRICS_BEARER_TOKEN", "ALLOWED_HOSTS", "EMAIL_HOST"):
        assert env[secret].startswith("${" + secret + ":?"), secret  # Compose refuses to start without one.
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]  # no default password
    assert compose["services"][name]["env_file"] == [{"path": ".env", "required": True}]


@pytest.mark.parametrize("name", list(PROCESSES))
def test_each_process_runs_the_procfile_line_of_its_name_and_is_probed_from_the_one_table(
    compose: dict, name: str
) -> None:
    # The command lines themselves are devstack/procfile.py's (tests/devstack/test_procfile.py);
    # devstack/deployment.py is the table the manifests are written from too.
    service = compose["services"][name]
    assert service["command"] == container_command(name)
    assert service["healthcheck"]["test"] == compose_healthcheck(name)


def test_every_service_has_a_restart_policy_and_a_health_check(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name
        assert service["healthcheck"]["test"], name
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_the_migrations_job_is_retried_until_it_succeeds_and_then_left_alone(compose: dict) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["restart"] == "on-failure"
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["healthcheck"]["test"] == ["CMD", "python", "manage.py", "migrate", "--check"]


@pytest.mark.parametrize("name", ["web", "ws", "worker", "beat", "tcp"])
def test_long_running_services_have_healthchecks_and_wait_for_their_dependencies(compose: dict, name: str) -> None:
    service = compose["services"][name]
    assert service["healthcheck"]["test"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_tcp_door_is_behind_the_balancer_and_scales(compose: dict) -> None:
    tcp = compose["services"]["tcp"]
    assert "ports" not in tcp and tcp["expose"] == ["8002"]
    assert "8002" in (ROOT / "Dockerfile").read_text().split("EXPOSE", 1)[1].splitlines()[0]
    assert tcp["environment"]["TCP_METRICS_PORT"] == "9102"  # scraped by the flashsale-tcp job
    assert tcp["environment"]["TCP_PROXY_PROTOCOL"] == "true"


def test_prometheus_and_grafana_run_pinned_images_provisioned_from_deploy(compose: dict) -> None:
    prometheus, grafana = compose["services"]["prometheus"], compose["services"]["grafana"]
    assert prometheus["image"].startswith("prom/prometheus:v2.")
    assert grafana["image"].startswith("grafana/grafana:") and not grafana["image"].endswith(":latest")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    mounts = [*prometheus["volumes"], *grafana["volumes"]]
    for mount in mounts:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), mount
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert {"prometheus-data", "grafana-data"} <= set(compose["volumes"])
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert prometheus["healthcheck"]["test"] and grafana["healthcheck"]["test"]


def test_prometheus_scrapes_with_the_token_the_app_services_require(compose: dict) -> None:
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_BEARER_TOKEN"}
    assert compose["services"]["prometheus"]["secrets"] == ["metrics_token"]
    for name in APP_SERVICES:
        assert compose["services"][name]["environment"]["METRICS_BEARER_TOKEN"].startswith("${METRICS_BEARER_TOKEN:?")
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    for job, service, port in (
        ("flashsale-web", "web", 8000),
        ("flashsale-ws", "ws", 8001),
        ("flashsale-tcp", "tcp", 9102),
    ):
        assert jobs[job]["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
        assert jobs[job]["dns_sd_configs"] == [
            {"names": [service], "type": "A", "port": port, "refresh_interval": "30s"}
        ]


def test_only_web_runs_several_processes_in_prometheus_multiprocess_mode(compose: dict) -> None:
    web = compose["services"]["web"]
    assert web["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"  # devstack.proc empties it
    for name in ["migrate", "ws", "worker", "beat", "tcp"]:
        assert "PROMETHEUS_MULTIPROC_DIR" not in compose["services"][name]["environment"], name
    assert compose["services"]["ws"]["environment"]["METRICS_STACK_COLLECTOR"] == "false"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_the_probes_answer_ok_when_redis_and_postgresql_answer(client: object, path: str) -> None:
    response = client.get(path)  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_haproxy_fronts_web_and_ws_which_publish_no_host_port_so_they_scale(compose: dict) -> None:
    haproxy = compose["services"]["haproxy"]
    assert haproxy["image"].startswith("haproxy:2.") and not haproxy["image"].endswith(":latest")
    assert haproxy["volumes"] == [
        "./deploy/haproxy:/usr/local/etc/haproxy:ro",
        "${TLS_CERT_FILE:?set TLS_CERT_FILE in .env (make certs writes a self-signed pair)}:"
        f"{COMPOSE_CERTIFICATE}:ro",
        "${TLS_KEY_FILE:?set TLS_KEY_FILE in .env (make certs writes a self-signed pair)}:"
        f"{COMPOSE_CERTIFICATE}.key:ro",
    ]
    assert haproxy["ports"] == ["${HTTP_PORT:-80}:8080", "${HTTPS_PORT:-443}:8443", "${TCP_DOOR_PORT:-8002}:8002"]
    assert set(haproxy["depends_on"]) == {"web", "ws", "tcp"}
    # `docker compose up --scale web=4 --scale ws=2 --scale worker=3 --scale tcp=2`: no fixed
    # host port or container name may collide between replicas.
    for name in ["web", "ws", "worker", "tcp"]:
        service = compose["services"][name]
        assert "ports" not in service, name
        assert "container_name" not in service, name
    assert compose["services"]["web"]["expose"] == ["8000"]
    assert compose["services"]["ws"]["expose"] == ["8001"]
    # The per-IP window counts the shopper HAProxy names, not HAProxy.
    env = compose["services"]["web"]["environment"]
    assert (env["ANTIBOT_CLIENT_IP_HEADER"], env["ANTIBOT_TRUSTED_PROXY_COUNT"]) == ("X-Forwarded-For", "1")
    # ... believed from the stack's own network only, which compose creates with that range.
    subnet = "${FLASHSALE_SUBNET:?set FLASHSALE_SUBNET in .env (see .env.example)}"
    assert env["TRUSTED_PROXY_NETWORKS"] == subnet
    assert compose["networks"]["default"]["ipam"]["config"] == [{"subnet": subnet}]
    assert env["BEHIND_TLS_PROXY"] == "true"


def test_the_haproxy_files_are_the_ones_devstack_writes_and_haproxy_accepts_them(tmp_path: Path) -> None:
    # One configuration for the compose stack and the local proof (devstack/loadbalancer.py)
    for path, text in compose_files().items():
        assert path.read_bytes().decode() == text, f"{path}: run python -m devstack.loadbalancer"
    config = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    assert "server-template web- 16 web:8000 check resolvers docker init-addr none" in config
    assert "use_backend ws if websocket" in config
    assert "http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost" in config
    assert "stick" not in config and "cookie" not in config  # No sticky sessions.
    # A slow client is the balancer's to time out: whole requests go to the web processes
    assert "option http-buffer-request" in config
    assert "timeout http-request 5s" in config
    assert f"errorfile 408 {COMPOSE_ERROR_DIR}/request-timeout.http" in config
    # haproxy -c on the same file, its error page where this machine has it
    pair = certificates_write(tmp_path / "tls")
    local = tmp_path / "haproxy.cfg"
    local.write_text(
        config.replace(COMPOSE_CERTIFICATE, str(pair.certificate)).replace(
            COMPOSE_ERROR_DIR, str(ROOT / "deploy" / "haproxy")
        )
    )
    binary = haproxy_binary()
    assert binary is not None, "make deps installs haproxy"
    checked = subprocess.run([binary, "-c", "-f", str(local)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
