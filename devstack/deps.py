"""``make deps``: the Debian programs the test suite and the benchmark run, installed if missing.

Each argument is ``program:package``: the program looked up on ``PATH`` and the Debian package
that brings it. When some are missing: as root, ``apt-get install`` them; with password-less
sudo, the same through sudo; otherwise stop at once with one line naming the packages and the
command to run. Runs with the system's Python before any virtualenv exists, so it uses the
standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys


def _say(message: str) -> None:
    print(f"[make deps] {message}", flush=True)


def _missing(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(program, package) for program, package in pairs if shutil.which(program) is None]


def _privilege() -> list[str] | None:
    """The prefix that runs apt-get as root: none as root, sudo when it needs no password."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return [sudo, "-n"]
    return None


def _parse(argument: str) -> tuple[str, str]:
    program, sep, package = argument.partition(":")
    if not sep or not program or not package:
        raise argparse.ArgumentTypeError(f"expected program:package, got {argument!r}")
    return program, package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m devstack.deps", description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", type=_parse, metavar="program:package")
    parser.add_argument("--dry-run", action="store_true", help="say what would be installed, install nothing")
    args = parser.parse_args(argv)

    missing = _missing(args.pairs)
    if not missing:
        _say(f"present: {', '.join(program for program, _ in args.pairs)}")
        return 0
    programs = ", ".join(program for program, _ in missing)
    packages = sorted({package for _, package in missing})
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    apt = shutil.which("apt-get")
    prefix = _privilege()
    if apt is None or prefix is None:
        how = "sudo " + " ".join(install) if apt else f"your system's package manager ({' '.join(packages)})"
        _say(f"missing {programs} (Debian packages: {' '.join(packages)}); install them with: {how}")
        return 1
    _say(f"missing {programs}; installing Debian packages: {' '.join(packages)}")
    if args.dry_run:
        _say("would run: " + " ".join([*prefix, "apt-get", "update", "-qq"]) + " && " + " ".join([*prefix, *install]))
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in ([*prefix, apt, "update", "-qq"], [*prefix, *install]):
        if subprocess.run(step, env=env, check=False).returncode != 0:
            _say(f"failed: {' '.join(step)}")
            return 1
    still = _missing(missing)
    if still:
        _say(f"still missing after the install: {', '.join(program for program, _ in still)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
