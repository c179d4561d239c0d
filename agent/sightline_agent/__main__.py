"""``python -m sightline_agent``, the same as the ``sightline-agent`` command (see docs/agent.md)."""
import sys

from sightline_agent.cli import main

sys.exit(main())
