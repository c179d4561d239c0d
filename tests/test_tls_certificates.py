"""project/tls.py: the local CA and server certificate of TLS=self-signed (no server, no Django)."""
import datetime
import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from project import tls

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def verify_for(files: tls.TlsFiles, name: str, ca: Path | None = None):
    """Verify the server certificate for `name` by web PKI rules, trusting only `ca`."""
    try:
        subject = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(Store([load(ca or files.ca)])).build_server_verifier(subject)
    return verifier.verify(load(files.cert), [])


def test_it_makes_a_ca_and_a_server_certificate_valid_for_the_loopback_names_and_host(tmp_path):
    files = tls.ensure_self_signed(tmp_path / "tls", tls.server_names("portal.lan"))
    assert files.created_ca and files.created_cert
    for name in ("localhost", "127.0.0.1", "::1", "portal.lan"):
        chain = verify_for(files, name)
        assert chain[-1] == load(files.ca)
    with pytest.raises(VerificationError):
        verify_for(files, "example.com")
    ca = load(files.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert load(files.cert).extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_a_server_certificate_from_another_ca_is_not_trusted(tmp_path):
    files = tls.ensure_self_signed(tmp_path / "one", tls.server_names("127.0.0.1"))
    other = tls.ensure_self_signed(tmp_path / "two", tls.server_names("127.0.0.1"))
    with pytest.raises(VerificationError):
        verify_for(files, "127.0.0.1", ca=other.ca)


def test_the_private_keys_are_readable_by_the_owner_only(tmp_path):
    files = tls.ensure_self_signed(tmp_path / "tls", tls.server_names("127.0.0.1"))
    assert stat.S_IMODE(files.ca.with_name(tls.CA_KEY_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE(files.ca.stat().st_mode) == 0o644
    assert not list((tmp_path / "tls").glob("*.tmp"))


def test_a_second_start_reuses_the_ca_and_the_server_certificate(tmp_path):
    first = tls.ensure_self_signed(tmp_path / "tls", tls.server_names("127.0.0.1"))
    ca_bytes, cert_bytes = first.ca.read_bytes(), first.cert.read_bytes()
    again = tls.ensure_self_signed(tmp_path / "tls", tls.server_names("127.0.0.1"))
    assert not again.created_ca and not again.created_cert
    assert again.ca.read_bytes() == ca_bytes and again.cert.read_bytes() == cert_bytes


def test_a_new_host_gets_a_new_server_certificate_from_the_same_ca(tmp_path):
    first = tls.ensure_self_signed(tmp_path / "tls", tls.server_names("127.0.0.1"))
    ca_bytes = first.ca.read_bytes()
    moved = tls.ensure_self_signed(tmp_path / "tls", tls.server_names("192.168.1.20"))
    assert not moved.created_ca and moved.created_cert
    assert moved.ca.read_bytes() == ca_bytes  # a browser that trusted the CA still does
    verify_for(moved, "192.168.1.20")
    verify_for(moved, "localhost")


def test_a_certificate_close_to_expiry_or_missing_a_name_is_renewed():
    ca_key, ca_cert = tls.make_ca("test CA")
    _, cert = tls.make_server_cert(ca_key, ca_cert, ["localhost", "127.0.0.1"], days=tls.RENEW_DAYS + 5)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert tls.needs_new_server_cert(cert, ca_cert, ["localhost"], now) is None
    assert "expires" in tls.needs_new_server_cert(cert, ca_cert, ["localhost"], now + datetime.timedelta(days=6))
    assert "::1" in tls.needs_new_server_cert(cert, ca_cert, ["localhost", "0:0::1"], now)
    _, other_ca = tls.make_ca("another CA")
    assert "not signed by this CA" in tls.needs_new_server_cert(cert, other_ca, ["localhost"], now)


def test_a_wildcard_host_is_covered_by_the_machines_name_not_by_the_wildcard():
    import socket

    names = tls.server_names("0.0.0.0")
    assert names[:3] == ["localhost", "127.0.0.1", "::1"] and socket.gethostname() in names
    assert "0.0.0.0" not in names
    assert tls.server_names("[::1]") == ["localhost", "127.0.0.1", "::1"]


def test_the_command_line_prints_the_paths_for_scripts_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "project.tls", str(tmp_path / "tls"), "cams.local"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert values["CA"] == str(tmp_path / "tls" / "ca.pem") and values["CREATED_CA"] == "1"
    assert values["NAMES"] == "localhost,127.0.0.1,::1,cams.local"
    assert Path(values["CERT"]).exists() and Path(values["KEY"]).exists()
