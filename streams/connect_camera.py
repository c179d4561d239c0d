"""Connect-a-camera snippets for the token page: the exact agent command, a bridge file entry
for an RTSP camera, a systemd unit and a container command, with this portal's device URL
and the token file's path. Pure text; never the token itself (it lives in the file, which the
page offers as a download), so a snippet can be pasted in a shell or a ticket safely.
"""
from __future__ import annotations

import json

CONFIG_DIR = "/etc/sightline"
BRIDGE_FILE = f"{CONFIG_DIR}/bridge.toml"
INSTALL_DIR = "/opt/sightline"
IMAGE = "sightline:latest"  # docker-compose.yml's image name


def _toml(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes), whatever the device's name holds.
    return json.dumps(value, ensure_ascii=False)


def agent_command(device_url: str, token_file: str) -> str:
    """Run by hand from the directory holding the downloaded token file (test pattern first)."""
    return f"sightline-agent --url {device_url} --token-file {token_file}"


def bridge_entry(device_url: str, devices: list[tuple[str, str]]) -> str:
    """A bridge file (sightline-agent bridge) with one [[camera]] per (name, token file)."""
    lines = ["# " + BRIDGE_FILE + " (chmod 600: it holds the cameras' passwords)",
             "[defaults]", f"sightline_url = {_toml(device_url)}", ""]
    for name, token_file in devices:
        lines += ["[[camera]]",
                  f"name = {_toml(name)}",
                  'url = "rtsp://USER:PASSWORD@CAMERA-ADDRESS:554/PATH"  # sightline-agent discover --user USER',
                  f"token_file = {_toml(f'{CONFIG_DIR}/{token_file}')}",
                  '# onvif = "CAMERA-ADDRESS"  # brightness/contrast through the camera\'s ONVIF imaging service',
                  ""]
    return "\n".join(lines).rstrip() + "\n"


def systemd_unit() -> str:
    return f"""# /etc/systemd/system/sightline-bridge.service
[Unit]
Description=Sightline RTSP bridge
After=network-online.target
Wants=network-online.target

[Service]
User=sightline
WorkingDirectory={INSTALL_DIR}
ExecStart={INSTALL_DIR}/.venv/bin/sightline-agent bridge --config {BRIDGE_FILE}
Restart=on-failure
RestartSec=10
RestartPreventExitStatus=2

[Install]
WantedBy=multi-user.target
"""


def container_command() -> str:
    return (f"docker run -d --name sightline-bridge --restart unless-stopped \\\n"
            f"    -v {CONFIG_DIR}:{CONFIG_DIR}:ro \\\n"
            f"    {IMAGE} sightline-agent bridge --config {BRIDGE_FILE}\n")


def snippets(device_url: str, issued: list[tuple[str, str]]) -> dict:
    """All snippets for the devices just issued, as (name, token file name) pairs."""
    return {
        "commands": [agent_command(device_url, token_file) for _, token_file in issued],
        "bridge": bridge_entry(device_url, issued),
        "systemd": systemd_unit(),
        "container": container_command(),
        "config_dir": CONFIG_DIR,
    }
