"""The agent's command rules agree with the server's: what the agent applies, the server accepts
(kept here, beside the server, because it imports streams.control; agent/tests need no portal)."""
import pytest

from sightline_agent.controls import validate
from streams.control import validate_settings


@pytest.mark.parametrize("changes", [
    {"brightness": -100}, {"brightness": 100}, {"contrast": 0}, {"fps": 1}, {"fps": 60}, {"fps": 30.0},
    {"resolution": "16x16"}, {"resolution": "3840x2160"}, {"resolution": "1280x720"},
    {"x_ir_mode": "auto"}, {"x_a": None}, {"x_zoom_level": 2.5}, {"x_" + "z" * 30: True},
    {"brightness": 5, "contrast": -5, "fps": 12, "resolution": "320x240", "x_note": "n" * 200},
])
def test_whatever_the_agent_applies_the_server_accepts_in_its_ack(changes):
    applied = validate(changes)
    assert validate_settings(applied) == applied
