"""``make run``: from a fresh clone to the whole stack running on this machine.

Starts a real Redis (append-only) and a real PostgreSQL under ``.run/`` unless ``REDIS_URL`` /
``DATABASE_URL`` name servers already running, migrates, creates the demo admin and the demo
sale, then runs web (granian, WSGI), ws (uvicorn, ASGI), a Celery worker and Celery beat
under one process manager with prefixed logs. Ctrl-C stops every process, then the servers.
A second run reuses ``.run/``: same data, same admin password.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from flashsale_project.localservers import LocalPostgres, LocalRedis, LocalServerError, free_port

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


def _wait_then_announce(url: str, admin_url: str, ws_url: str, *, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        stop.wait(0.3)
    if stop.is_set():
        return
    _say("ready.")
    _say(f"  storefront  {url}")
    _say(f"  admin       {admin_url}")
    _say(f"  websockets  {ws_url}/ws/sales/<id>/")
    _say(f"  API schema  {url}api/schema/")
    _say(f"  mail        {RUN_DIR / 'mail'} (one file per message)")
    _say("Ctrl-C stops everything.")


def process_commands(*, web_port: int, ws_port: int, web_workers: int, python: str) -> dict[str, str]:
    """The four long-running processes, as shell commands (``exec`` so signals reach them)."""
    bin_dir = Path(python).parent
    return {
        "web": (
            f"exec {bin_dir / 'granian'} --interface wsgi flashsale_project.wsgi:application"
            f" --host 127.0.0.1 --port {web_port} --workers {web_workers}"
            # The shape `make bench` measured best on two cores (README, "The server's shape"):
            # eight threads a worker overlap Redis round trips; a backpressure above the
            # connections a worker may hold keeps none waiting seconds for a turn.
            " --blocking-threads 8 --backpressure 2048"
            f" --static-path-route /static --static-path-mount {ROOT / 'staticfiles'} --log-level warning"
        ),
        "ws": (
            f"exec {bin_dir / 'uvicorn'} flashsale_project.asgi:application --host 127.0.0.1"
            f" --port {ws_port} --no-access-log --log-level warning"
            # docs/websockets.md: the trimmed protocol, no per-socket compressor, clients
            # send nothing, a backlog for a crowd reconnecting at once.
            " --ws sales.ws_protocol:ListenerProtocol --ws-per-message-deflate false --ws-max-size 4096"
            " --backlog 4096"
        ),
        "worker": f"exec {bin_dir / 'celery'} -A flashsale_project worker --loglevel INFO --concurrency 2 -n worker@%h",
        "beat": (
            f"exec {bin_dir / 'celery'} -A flashsale_project beat --loglevel INFO"
            f" --schedule {RUN_DIR / 'celerybeat-schedule'}"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-port", type=int, default=int(os.environ.get("WEB_PORT", "8000")))
    parser.add_argument("--ws-port", type=int, default=int(os.environ.get("WS_PORT", "8001")))
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
    parser.add_argument("--sale-starts-in", type=int, default=120, help="seconds until the demo sale opens")
    args = parser.parse_args(argv)

    for name, port in (("web", args.web_port), ("ws", args.ws_port)):
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
            _say(f"Redis {redis.url} (append-only, data in .run/redis)")
        if not os.environ.get("DATABASE_URL"):
            postgres = LocalPostgres(data_dir=RUN_DIR / "postgres", port=_port_or_free(5440)).start()
            env["DATABASE_URL"] = postgres.url
            _say(f"PostgreSQL {postgres.url} (data in .run/postgres)")
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
    finally:
        if postgres is not None:
            postgres.stop()
        if redis is not None:
            redis.stop()
        (RUN_DIR / "stack.env").unlink(missing_ok=True)
        _say("stopped.")


def _run_processes(args: argparse.Namespace, env: dict[str, str]) -> int:
    from honcho.manager import Manager

    web_url = f"http://127.0.0.1:{args.web_port}/"
    ws_url = f"ws://127.0.0.1:{args.ws_port}"
    env["FLASHSALE_WS_URL"] = ws_url
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
    _manage("demo", "--starts-in", str(args.sale_starts_in), "--password-file", str(RUN_DIR / "admin.txt"), env=env)

    manager = Manager()
    for name, command in process_commands(
        web_port=args.web_port, ws_port=args.ws_port, web_workers=args.web_workers, python=sys.executable
    ).items():
        manager.add_process(name, command, env=env, cwd=str(ROOT))
    stop = threading.Event()
    announcer = threading.Thread(
        target=_wait_then_announce, args=(web_url, f"{web_url}admin/", ws_url), kwargs={"stop": stop}, daemon=True
    )
    announcer.start()
    try:
        manager.loop()
    finally:
        stop.set()
    # Ctrl-C is the normal way out; it is not a failure of `make run`.
    return 0 if manager.returncode in (None, 0, 130, 143) else int(manager.returncode)


if __name__ == "__main__":
    sys.exit(main())
