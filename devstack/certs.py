"""``python -m devstack.certs [DIR] [--host NAME ...]`` (``make certs``): a self-signed
certificate and its key for trying the stack over HTTPS, with the ``cryptography`` package
alone (no openssl program needed).

It writes ``DIR/site.pem`` (the certificate) and ``DIR/site.pem.key`` (its key, the name
HAProxy loads beside a certificate), and leaves both alone when they exist (``--force``
replaces them). A browser warns about a self-signed certificate; a real one (from an ACME
client or a CA) goes where ``TLS_CERT_FILE`` and ``TLS_KEY_FILE`` point instead.

The key is readable by every user (the balancer's container runs as its own user and reads
the file through a bind mount), and the directory by its owner only, which keeps other
users of the host out.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "deploy" / "tls"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CERTIFICATE_NAME = "site.pem"
KEY_NAME = "site.pem.key"


@dataclass(frozen=True)
class CertificatePair:
    certificate: Path
    key: Path


def certificates_write(
    directory: Path, *, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 365, force: bool = False
) -> CertificatePair:
    """A self-signed certificate for ``hosts`` (names and addresses) valid ``days`` days, and
    its key, in ``directory``. Idempotent unless ``force``."""
    # Imported here: cryptography is requirements-dev.txt's (make certs installs it), and
    # the image and make run's virtualenv, which import every module of devstack, lack it.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    pair = CertificatePair(certificate=directory / CERTIFICATE_NAME, key=directory / KEY_NAME)
    if pair.certificate.exists() and pair.key.exists() and not force:
        return pair
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(pair.key, 0o644)
    return pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.certs", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--host", action="append", help="a name or address the certificate covers (repeatable)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--force", action="store_true", help="replace an existing pair")
    args = parser.parse_args(argv)
    pair = certificates_write(args.directory, hosts=tuple(args.host or DEFAULT_HOSTS), days=args.days, force=args.force)
    print(f"certificate: {pair.certificate}\nkey:         {pair.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
