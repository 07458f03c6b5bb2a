"""``make run``: from a fresh clone to the whole stack running on this machine.

Starts a real Redis (append-only) and a real PostgreSQL under ``.run/`` unless ``REDIS_URL`` /
``DATABASE_URL`` name servers already running, migrates, creates the demo admin and the demo
sale, then runs web (granian, WSGI), ws (uvicorn, ASGI), a Celery worker, Celery beat and
the TCP front door under the supervisor (``devstack.supervisor``) with prefixed logs. "ready."
is printed once all five are up, with the demo sale's page and the demo logins below it; a
process that exits during start-up ends the run (non-zero, naming it and printing its last
lines); one that exits later is restarted. Ctrl-C stops every process, then the servers. A
second run reuses ``.run/``: same data, same admin password.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType

from prometheus_client import multiprocess

from devstack import probes
from devstack.localservers import LocalPostgres, LocalRedis, LocalServerError, free_port
from devstack.procfile import READINESS_PATH, Shape, command, node_name
from devstack.supervisor import Program, StartupFailure, Supervisor

ROOT = Path(__file__).resolve().parent.parent
# Local state: server data, mail, the admin password. FLASHSALE_RUN_DIR moves it (tests do).
RUN_DIR = Path(os.environ.get("FLASHSALE_RUN_DIR") or ROOT / ".run").resolve()


def _port_or_free(preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port whose old connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True)


def _manage_said(*args: str, env: dict[str, str]) -> list[str]:
    """``_manage``, its output shown as it comes and returned."""
    said = []
    with subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            print(line, end="", flush=True)
            said.append(line.rstrip("\n"))
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    return said


DEMO_SALE_PAGE = re.compile(r"^\[demo\] sale page: (/sales/\d+/)$")


def first_minute(*, web_url: str, demo_said: list[str], passwords_file: Path) -> list[str]:
    """What a newcomer needs once the stack is up, said again below the start-up's output:
    the demo sale's page and the demo logins (``manage.py demo`` keeps their passwords in
    ``passwords_file``, a JSON object of username to password)."""
    lines = []
    for line in demo_said:
        found = DEMO_SALE_PAGE.match(line)
        if found:
            lines.append(f"  demo sale   {web_url.rstrip('/')}{found.group(1)}")
            sale_id = found.group(1).strip("/").rsplit("/", 1)[1]
            lines.append(f"  console     {web_url.rstrip('/')}/admin/sales/flashsale/{sale_id}/console/")
    try:
        passwords = json.loads(passwords_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        passwords = {}
    logins = [f"{name} / {password}" for name, password in passwords.items() if isinstance(password, str)]
    if logins:
        lines.append(f"  logins      {', '.join(logins)} (admin is staff; kept in {passwords_file})")
    return lines


def programs(shape: Shape, *, env: dict[str, str]) -> list[Program]:
    """The processes of ``make run`` and how each is known to be up."""
    web_url = f"http://127.0.0.1:{shape.web_port}"
    ws_url = f"http://127.0.0.1:{shape.ws_port}"
    broker = probes.broker_url(env)
    node = node_name(shape, socket.gethostname())
    return [
        Program(
            "web",
            command("web", shape),
            ready=lambda: probes.http_ok(web_url + READINESS_PATH),
            ready_means=f"answered {READINESS_PATH}",
        ),
        Program(
            "ws",
            command("ws", shape),
            ready=lambda: probes.http_ok(ws_url + READINESS_PATH),
            ready_means=f"answered {READINESS_PATH}",
        ),
        Program(
            "worker",
            command("worker", shape),
            ready=lambda: probes.celery_answers(broker, node),
            ready_means=f"answered a ping as {node}",
        ),
        Program("beat", command("beat", shape), ready_line=probes.BEAT_STARTED, ready_means="said it started"),
        Program(
            "tcp",
            command("tcp", shape),
            ready=lambda: probes.tcp_answers(shape.tcp_port),
            ready_means="answered a PING frame",
        ),
    ]


def forget_dead_processes(metrics_dir: Path) -> None:
    """prometheus_client's multiprocess mode sums "live" gauges (open WebSockets) over the
    files of every process that wrote one; a process that was killed never removed its own."""
    for path in metrics_dir.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(metrics_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.splitlines()[0])
    parser.add_argument("--web-port", type=int, default=int(os.environ.get("WEB_PORT", "8000")))
    parser.add_argument("--ws-port", type=int, default=int(os.environ.get("WS_PORT", "8001")))
    parser.add_argument("--tcp-port", type=int, default=int(os.environ.get("TCP_PORT", "8002")))
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
    parser.add_argument("--sale-starts-in", type=int, default=120, help="seconds until the demo sale opens")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds the processes have to come up")
    args = parser.parse_args(argv)

    for name, port in (("web", args.web_port), ("ws", args.ws_port), ("tcp", args.tcp_port)):
        if _port_or_free(port) != port:
            _say(f"port {port} for {name} is taken; pass --{name}-port or set {name.upper()}_PORT.")
            return 2

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / "mail").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.local")
    redis: LocalRedis | None = None
    postgres: LocalPostgres | None = None
    try:
        if not os.environ.get("REDIS_URL"):
            redis = LocalRedis(data_dir=RUN_DIR / "redis", port=_port_or_free(6390)).start()
            env["REDIS_URL"] = redis.url
            _say(f"Redis {redis.url} (append-only, data in {RUN_DIR / 'redis'})")
        if not os.environ.get("DATABASE_URL"):
            postgres = LocalPostgres(data_dir=RUN_DIR / "postgres", port=_port_or_free(5440)).start()
            env["DATABASE_URL"] = postgres.url
            _say(f"PostgreSQL {postgres.url} (data in {RUN_DIR / 'postgres'})")
        (RUN_DIR / "stack.env").write_text(
            f"DATABASE_URL={env['DATABASE_URL']}\nREDIS_URL={env['REDIS_URL']}\n", encoding="utf-8"
        )
        return _run_processes(args, env)
    except LocalServerError as error:
        _say(f"could not start a server: {error}")
        return 1
    except subprocess.CalledProcessError as error:
        _say(f"setup step failed ({' '.join(map(str, error.cmd[1:]))}), exit code {error.returncode}.")
        return 1
    except KeyboardInterrupt:
        return 0  # Ctrl-C while setting up.
    finally:
        if postgres is not None:
            postgres.stop()
        if redis is not None:
            redis.stop()
        (RUN_DIR / "stack.env").unlink(missing_ok=True)
        _say("stopped.")


def _run_processes(args: argparse.Namespace, env: dict[str, str]) -> int:
    web_url = f"http://127.0.0.1:{args.web_port}/"
    ws_url = f"ws://127.0.0.1:{args.ws_port}"
    env["FLASHSALE_WS_URL"] = ws_url
    # The email's links and the demo shop's webhook endpoint name the web process's address;
    # the demo shop logs the webhooks it receives beside the mail.
    env["FLASHSALE_SITE_URL"] = web_url.rstrip("/")
    env.setdefault("FLASHSALE_DEMO_SHOP_LOG", str(RUN_DIR / "demo-shop-webhooks.log"))
    # A rehearsal started from the admin sends its crowd (from a worker) to this stack.
    env["FLASHSALE_REHEARSAL_URL"] = web_url
    env["FLASHSALE_REHEARSAL_TCP"] = f"127.0.0.1:{args.tcp_port}"
    env.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1")
    env["PYTHONUNBUFFERED"] = "1"
    # prometheus_client's multiprocess mode: one directory per run, cleaned before start.
    metrics_dir = RUN_DIR / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    _say("migrating the database ...")
    _manage("migrate", "--noinput", env=env)
    _manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
    env["EMAIL_FILE_PATH"] = str(RUN_DIR / "mail")
    passwords_file = RUN_DIR / "admin.txt"
    demo_said = _manage_said(
        "demo", "--starts-in", str(args.sale_starts_in), "--password-file", str(passwords_file), env=env
    )

    shape = Shape(
        web_port=args.web_port,
        ws_port=args.ws_port,
        tcp_port=args.tcp_port,
        web_workers=args.web_workers,
        static_root=ROOT / "staticfiles",
        beat_schedule=RUN_DIR / "celerybeat-schedule",
    )
    supervisor = Supervisor(
        programs(shape, env=env), env=env, cwd=ROOT, say=_say, after_exit=lambda: forget_dead_processes(metrics_dir)
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    _say("starting web, ws, worker, beat and tcp ...")
    supervisor.start()
    try:
        supervisor.wait_until_ready(timeout=args.ready_timeout)
        if supervisor.stopping:
            return 0
        _say("ready.")
        _say(f"  storefront  {web_url}")
        _say(f"  admin       {web_url}admin/")
        for line in first_minute(web_url=web_url, demo_said=demo_said, passwords_file=passwords_file):
            _say(line)
        _say(f"  websockets  {ws_url}/ws/sales/<id>/")
        _say(f"  tcp door    tcp://127.0.0.1:{args.tcp_port} (docs/tcp.md)")
        _say(f"  API docs    {web_url}api/docs/ (schema: {web_url}api/schema/)")
        _say(f"  mail        {RUN_DIR / 'mail'} (one file per message)")
        _say(
            f"  demo shop   {web_url}demo-shop/webhooks/ (webhooks received, also in {env['FLASHSALE_DEMO_SHOP_LOG']})"
        )
        _say("A process that exits is restarted; Ctrl-C stops everything.")
        supervisor.supervise()
        return 0  # Ctrl-C is the normal way out; it is not a failure of `make run`.
    except StartupFailure as failure:
        supervisor.report(failure)
        _say(f"start-up failed: {failure.name} {failure.reason}.")
        return 1
    finally:
        _say("stopping web, ws, worker, beat and tcp ...")
        supervisor.stop_all()
