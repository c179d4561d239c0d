"""``python -m streams.agent`` (see docs/agent.md)."""
import sys

from streams.agent.cli import main

sys.exit(main())
