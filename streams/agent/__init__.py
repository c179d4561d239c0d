"""Sightline reference device agent: a command that behaves like a real camera.

Run ``python -m streams.agent --help``; installer documentation is docs/agent.md.
The package deliberately imports nothing from Django so it can run on a camera
or laptop with only Pillow, PyAV and websockets installed.
"""

AGENT_VERSION = "0.1.0"
AGENT_NAME = f"sightline-agent/{AGENT_VERSION}"
