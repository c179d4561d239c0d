"""How the agent checks the portal's certificate on wss:// (docs/agent.md, "TLS").

By default the server's certificate must chain to a CA the system trusts
(Debian: /etc/ssl/certs) and name the host of --url. ``--ca-file PATH`` trusts
that CA (PEM) as well, e.g. the local CA `scripts/run` makes with TLS=self-signed.
``--insecure`` checks nothing: anyone on the path can read the token and the video;
for a quick test only, and said loudly at start and in the status line.

A certificate that fails the check is a connection failure like any other: the
agent says why in one line and retries with backoff (a server whose certificate
is fixed or renewed is reached again without restarting every camera).
"""
from __future__ import annotations

import ssl

INSECURE_WARNING = ("--insecure: the server's certificate is NOT checked; anyone between this agent and the "
                    "server can read the device token and the video. Use --ca-file PATH instead.")
INSECURE_MARK = "INSECURE"


class TlsSetupError(ValueError):
    """--ca-file/--insecure cannot be used as given (a usage error)."""


def client_context(url: str, ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext | None:
    """The SSL context for connecting to `url`, or None for ws:// (no TLS)."""
    if ca_file and insecure:
        raise TlsSetupError("--ca-file and --insecure contradict each other: use one")
    if not url.startswith("wss://"):
        if ca_file or insecure:
            raise TlsSetupError(f"{'--ca-file' if ca_file else '--insecure'} applies to wss:// URLs only; "
                                f"--url is {url.split('://')[0]}://")
        return None
    context = ssl.create_default_context()  # system CAs, host name checked, TLS 1.2 or newer
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise TlsSetupError(f"--ca-file {ca_file}: no such file") from None
        except PermissionError:
            raise TlsSetupError(f"--ca-file {ca_file}: permission denied") from None
        except (ssl.SSLError, OSError, ValueError):
            raise TlsSetupError(f"--ca-file {ca_file} holds no PEM certificate") from None
    return context


def untrusted_message(url: str, error: ssl.SSLCertVerificationError, ca_file: str | None) -> str:
    """One line: the certificate is not trusted, why, and what to do."""
    reason = (getattr(error, "verify_message", None) or str(error.reason or error)).rstrip(".")
    host = url.split("://", 1)[-1].split("/", 1)[0]
    if "mismatch" in reason.lower() or "not valid for" in reason.lower():
        fix = f"use the host name the certificate was made for in --url (not {host})"
    elif ca_file:
        fix = f"--ca-file {ca_file} is not the CA that signed the server's certificate: pass the right one"
    else:
        fix = ("pass --ca-file PATH with the CA that signed it (for `scripts/run` with TLS=self-signed: "
               "var/tls/ca.pem on the server)")
    return f"the server's certificate at {host} is not trusted ({reason}): {fix}"


def handshake_failed_message(url: str, error: ssl.SSLError) -> str:
    """One line for a TLS handshake that failed for another reason than the certificate."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    reason = getattr(error, "reason", None) or str(error)
    hint = (": the server does not seem to serve TLS on this port (a plain ws:// endpoint?)"
            if "WRONG_VERSION_NUMBER" in str(reason).upper() or "RECORD_LAYER_FAILURE" in str(reason).upper() else "")
    return f"TLS handshake with {host} failed ({reason}){hint}"
