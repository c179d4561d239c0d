"""Start the web server the one way Sightline is meant to run:   python -m project.serve [uvicorn options]

    python -m project.serve --host 0.0.0.0 --port 8000

runs uvicorn on project.asgi with the options every deployment needs
(scripts/run, the Dockerfile, docker-compose.yml and docs/deployment.md all use
it), then any options given:

- forwarded headers from TRUSTED_PROXIES (env, comma-separated addresses or
  networks): uvicorn rewrites the client address from X-Forwarded-For only
  for connections from those; empty (the default) turns proxy headers off, so
  no client can choose the address the auth-failure limit counts against.
  (uvicorn alone would trust 127.0.0.1 by default, i.e. anything on the host.)
- the HTTP protocol with a deadline for request heads (project/http_protocol.py,
  HANDSHAKE_TIMEOUT_SECONDS), so half-sent upgrades are dropped;
- no lifespan, and no permessage-deflate (docs/protocol.md section 1);
- --ws-max-size from the settings (WS_MAX_SIZE_BYTES), so the limits the welcome
  states are the ones enforced (docs/protocol.md section 8), unless given.
"""
from __future__ import annotations

import os
import sys

from project.env import env_list

APP = "project.asgi:application"
HTTP_PROTOCOL = "project.http_protocol:HeaderDeadlineProtocol"


def proxy_arguments(trusted_proxies: list[str]) -> list[str]:
    """uvicorn's forwarded-header options for these proxy addresses (none: headers ignored)."""
    if not trusted_proxies:
        return ["--no-proxy-headers"]
    return ["--proxy-headers", "--forwarded-allow-ips", ",".join(trusted_proxies)]


def uvicorn_arguments(trusted_proxies: list[str], extra: list[str]) -> list[str]:
    return [
        APP,
        "--lifespan", "off",
        "--ws-per-message-deflate", "false",
        "--http", HTTP_PROTOCOL,
        *proxy_arguments(trusted_proxies),
        *extra,
    ]


def ws_max_size() -> int:
    """WS_MAX_SIZE_BYTES as the settings derive it (from MAX_MESSAGE_BYTES unless set)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.conf import settings

    return int(settings.SIGHTLINE["WS_MAX_SIZE_BYTES"])


def main(argv: list[str]) -> None:
    extra = list(argv)
    if not any(arg.startswith("--ws-max-size") for arg in extra):
        extra += ["--ws-max-size", str(ws_max_size())]
    arguments = uvicorn_arguments(env_list("TRUSTED_PROXIES", []), extra)
    # exec: uvicorn becomes this process, so signals (SIGTERM → close 1012) reach it directly.
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", *arguments])


if __name__ == "__main__":
    main(sys.argv[1:])
