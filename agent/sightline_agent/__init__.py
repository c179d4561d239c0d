"""Sightline device agent: a command that behaves like a real camera, and the RTSP bridge.

Installed on its own (``pip install ./agent``, see agent/README.md and docs/agent.md) as
the ``sightline-agent`` command (or ``python -m sightline_agent``). The package imports
nothing from Django: it needs only websockets, Pillow and PyAV (plus the ``onvif`` extra
for ONVIF cameras). Its ``protocol`` module is the one implementation of the wire format;
the server imports it from here.
"""

__version__ = "1.1.0"  # also the package version (agent/pyproject.toml reads it)
AGENT_VERSION = __version__
AGENT_NAME = f"sightline-agent/{AGENT_VERSION}"  # User-Agent and the hello's "agent"
