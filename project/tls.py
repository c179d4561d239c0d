"""A local certificate authority and server certificate for `TLS=self-signed`.

`scripts/run` with TLS=self-signed serves HTTPS/WSS itself with files made here,
kept under `<SIGHTLINE_VAR_DIR>/tls/`:

    ca.pem       the local CA's certificate: what a browser or an agent (--ca-file) trusts
    ca-key.pem   its private key (mode 0600; never leaves this directory)
    server.pem   the server certificate, signed by the CA, for the names it is served under
    server-key.pem  its private key (mode 0600)

The CA is made once and kept, so a browser that trusts it keeps trusting the
installation. The server certificate is made again (by the same CA) only when it
does not cover a name asked for (HOST changed) or expires within RENEW_DAYS.

    python -m project.tls DIR [HOST ...]   ensure the files; print CA=, CERT=, KEY= lines

This module reads only its arguments and the file system (no Django settings).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
CERT_NAME = "server.pem"
KEY_NAME = "server-key.pem"
CA_DAYS = 3650
# Below 398 days: what browsers accept for a server certificate at all.
SERVER_DAYS = 365
RENEW_DAYS = 30
# Every local certificate answers for these, whatever HOST is.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    created_ca: bool
    created_cert: bool


def server_names(host: str | None) -> list[str]:
    """The names a server certificate for HOST covers: the loopback names and HOST; for a
    wildcard HOST (0.0.0.0, ::), which is reached by the machine's name, that name instead."""
    names = list(LOOPBACK_NAMES)
    extra = [socket.gethostname(), socket.getfqdn()] if (host or "") in WILDCARD_HOSTS else [host]
    for name in extra:
        name = (name or "").strip().strip("[]")
        if name and name not in names:
            names.append(name)
    return names


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    """Created 0600 from the start (not chmod after), then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name: str):
    """(private key, certificate) of a new CA that may sign server certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sightline local CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert, names: list[str], days: int = SERVER_DAYS):
    """(private key, certificate) for a TLS server answering to `names` (host names or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The subject alternative names of `cert`, IPs in their canonical text form."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def needs_new_server_cert(cert: x509.Certificate, ca_cert: x509.Certificate, names: list[str],
                          now: datetime.datetime | None = None) -> str | None:
    """Why the server certificate on disk cannot be reused (None: it can)."""
    now = now or _now()
    if cert.issuer != ca_cert.subject:
        return "it was not signed by this CA"
    missing = {_canonical(n) for n in names} - certificate_names(cert)
    if missing:
        return f"it does not cover {', '.join(sorted(missing))}"
    if cert.not_valid_after_utc - now < datetime.timedelta(days=RENEW_DAYS):
        return f"it expires within {RENEW_DAYS} days"
    return None


def ensure_self_signed(directory: Path | str, names: list[str]) -> TlsFiles:
    """Make (or reuse) the local CA and a server certificate for `names` in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_path, ca_key_path = directory / CA_NAME, directory / CA_KEY_NAME
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    created_ca = False
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_key, ca_cert = make_ca(f"Sightline local CA ({socket.gethostname()}, {directory.resolve()})"[:64])
        _write_private(ca_key_path, _key_pem(ca_key))
        _write_public(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
        created_ca = True
    reason = "there is none"
    if cert_path.exists() and key_path.exists() and not created_ca:
        reason = needs_new_server_cert(x509.load_pem_x509_certificate(cert_path.read_bytes()), ca_cert, names)
    if reason is not None:
        key, cert = make_server_cert(ca_key, ca_cert, names)
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(ca_path, cert_path, key_path, created_ca, reason is not None)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__, file=sys.stderr)
        return 2
    names: list[str] = []
    for host in argv[1:] or [""]:
        names += [n for n in server_names(host) if n not in names]
    files = ensure_self_signed(argv[0], names)
    print(f"CA={files.ca}\nCERT={files.cert}\nKEY={files.key}\n"
          f"CREATED_CA={int(files.created_ca)}\nCREATED_CERT={int(files.created_cert)}\nNAMES={','.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
