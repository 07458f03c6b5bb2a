"""``python -m devstack.proc <web|ws|worker|beat>``: become one process of the stack.

The containers run this (Dockerfile, docker-compose.yml): it reads the shape from the
environment (``LISTEN_HOST``, ``WEB_PORT``, ``WEB_WORKERS`` ..., docs/development.md) and
replaces itself (``exec``) with the command line of ``devstack.procfile``, so signals reach the
server directly and the container's main process is the server. ``--print`` only prints it.

With ``PROMETHEUS_MULTIPROC_DIR`` set, that directory is emptied first: prometheus_client's
multiprocess mode asks for an empty one at each start, and a restarted container keeps its
``/tmp``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

from devstack.procfile import NAMES, Shape, command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.proc", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--print", action="store_true", help="print the command line instead of running it")
    args = parser.parse_args(argv)
    line = command(args.name, Shape.from_environ())
    if args.print:
        print(shlex.join(line))
        return 0
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
        os.makedirs(multiproc_dir)
    sys.stdout.flush()
    os.execv(line[0], line)


if __name__ == "__main__":
    sys.exit(main())
