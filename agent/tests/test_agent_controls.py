"""Reference agent, decisions: command validation, welcome settings, backoff, what each close code means."""
import random

import pytest

from sightline_agent.controls import CameraSettings, InvalidSetting, apply_command, apply_welcome, validate
from sightline_agent.encoders import JpegEncoder
from sightline_agent.reconnect import (
    BACKOFF_CAP_SECONDS,
    EXIT_BAD_TOKEN,
    EXIT_DEVICE_DISABLED,
    EXIT_TOKEN_REVOKED,
    REPLACED_MEMORY_SECONDS,
    REPLACED_WAIT_SECONDS,
    AgentExit,
    Backoff,
    ReplacedBackoff,
    retry_delay,
    retry_message,
)
from sightline_agent.session import Agent, AgentConfig
from sightline_agent.sources import PatternSource
from sightline_agent.protocol import Close


def test_a_valid_command_is_applied_and_reported_back():
    settings = CameraSettings()
    applied = apply_command(settings, {"brightness": 20, "contrast": -5, "fps": 15, "resolution": "320x180",
                                       "x_ir_mode": "auto"})
    assert applied == {"brightness": 20, "contrast": -5, "fps": 15, "resolution": "320x180", "x_ir_mode": "auto"}
    assert (settings.brightness, settings.contrast, settings.fps, settings.width, settings.height) == (20, -5, 15, 320, 180)
    assert settings.as_dict()["x_ir_mode"] == "auto"


@pytest.mark.parametrize("changes,complaint", [
    ({"brightness": 101}, "brightness"),
    ({"brightness": -101}, "brightness"),
    ({"brightness": True}, "brightness"),
    ({"brightness": "20"}, "brightness"),
    ({"brightness": 2.5}, "brightness"),
    ({"contrast": 500}, "contrast"),
    ({"fps": 0}, "fps"),
    ({"fps": 61}, "fps"),
    ({"resolution": "640"}, "resolution"),
    ({"resolution": "641x360"}, "even"),
    ({"resolution": "8x8"}, "outside"),
    ({"resolution": 640}, "resolution"),
    ({"X_Mode": 1}, "unknown setting"),
    ({"ir_mode": "on"}, "unknown setting"),
    ({"x_" + "a" * 31: 1}, "unknown setting"),
    ({"x_mode": {"nested": 1}}, "x_mode"),
    ({"x_mode": "a" * 201}, "longer"),
    ({}, "non-empty"),
])
def test_an_invalid_command_is_refused_with_a_reason(changes, complaint):
    with pytest.raises(InvalidSetting, match=complaint):
        validate(changes)


def test_a_command_with_one_bad_key_changes_nothing():
    settings = CameraSettings(brightness=10)
    with pytest.raises(InvalidSetting):
        apply_command(settings, {"brightness": 40, "fps": 999})
    assert settings.brightness == 10 and settings.fps == 10


def test_fps_is_capped_by_the_servers_max_fps():
    with pytest.raises(InvalidSetting, match="between 1 and 25"):
        validate({"fps": 30}, max_fps=25)
    assert validate({"fps": 25}, max_fps=25) == {"fps": 25}


def test_a_generic_key_set_to_null_is_removed():
    settings = CameraSettings()
    apply_command(settings, {"x_ir_mode": "on"})
    apply_command(settings, {"x_ir_mode": None})
    assert "x_ir_mode" not in settings.as_dict()


def test_welcome_settings_apply_key_by_key_and_bad_ones_are_skipped():
    settings = CameraSettings()
    applied, rejected = apply_welcome(settings, {"brightness": 30, "contrast": 0, "fps": 500,
                                                 "resolution": "320x180", "x_note": "hi"})
    assert applied == {"brightness": 30, "contrast": 0, "resolution": "320x180", "x_note": "hi"}
    assert list(rejected) == ["fps"]
    assert (settings.brightness, settings.fps, settings.resolution) == (30, 10, "320x180")


def agent(**config) -> Agent:
    defaults = {"url": "ws://127.0.0.1:1/ws/device/", "token": "sl_AAAAAAAA_" + "a" * 43}
    return Agent(AgentConfig(**{**defaults, **config}), PatternSource(), JpegEncoder())


def test_the_agent_acks_a_command_it_applied():
    ack = agent().handle_command({"type": "command", "id": "c1", "settings": {"brightness": 50}})
    assert ack == {"type": "ack", "id": "c1", "ok": True, "applied": {"brightness": 50}}


def test_the_agent_acks_an_invalid_command_with_ok_false_and_keeps_its_settings():
    device = agent()
    ack = device.handle_command({"type": "command", "id": "c2", "settings": {"contrast": 1000}})
    assert ack["type"] == "ack" and ack["id"] == "c2" and ack["ok"] is False
    assert "contrast" in ack["error"] and device.settings.contrast == 0
    ack = device.handle_command({"type": "command", "id": "c3", "settings": "bright"})
    assert ack["ok"] is False


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter():
    highest = Backoff(rng=lambda: 1.0)
    ceilings = [highest.next_delay() for _ in range(10)]
    assert ceilings[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(ceilings) == BACKOFF_CAP_SECONDS == ceilings[-1]
    assert Backoff(rng=lambda: 0.0).next_delay() == 0.0


def test_backoff_delays_are_spread_over_the_whole_range():
    backoff = Backoff(rng=random.Random(7).random)
    delays = []
    for _ in range(400):
        backoff.attempt = 20  # at the cap
        delays.append(backoff.next_delay())
    assert 0 <= min(delays) < 3 and 27 < max(delays) <= 30
    assert len({round(d, 3) for d in delays}) > 350


def test_backoff_resets_after_a_stable_session():
    backoff = Backoff(rng=lambda: 1.0)
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize("code,exit_code", [
    (Close.BAD_TOKEN, EXIT_BAD_TOKEN), (Close.TOKEN_REVOKED, EXIT_TOKEN_REVOKED),
    (Close.DEVICE_DISABLED, EXIT_DEVICE_DISABLED),
])
def test_token_and_disabled_refusals_end_the_agent(code, exit_code):
    with pytest.raises(AgentExit) as raised:
        retry_delay(code, Backoff())
    assert raised.value.code == exit_code and str(code) in raised.value.message


@pytest.mark.parametrize("code", [None, 1001, 1012, Close.HEARTBEAT_TIMEOUT, Close.RATE_LIMITED, 1011])
def test_shutdowns_timeouts_and_network_errors_are_retried_with_backoff(code):
    assert 0 <= retry_delay(code, Backoff(rng=lambda: 1.0)) == 0.5


def test_a_replaced_agent_retries_slowly_and_an_auth_rate_limited_one_waits_a_minute():
    assert REPLACED_WAIT_SECONDS <= retry_delay(Close.REPLACED, Backoff(rng=lambda: 0.0))
    assert retry_delay(Close.REPLACED, Backoff(rng=lambda: 1.0)) <= REPLACED_WAIT_SECONDS * 1.1
    assert retry_delay(Close.AUTH_RATE_LIMITED, Backoff(rng=lambda: 0.0)) >= 60


def test_after_4012_the_agent_waits_a_minute_doubling_while_takeovers_repeat_and_says_why():
    now = [1000.0]
    replaced = ReplacedBackoff(clock=lambda: now[0], rng=lambda: 0.0)
    waits = []
    for _ in range(6):  # taken over again right after each reconnect
        waits.append(retry_delay(Close.REPLACED, Backoff(), replaced))
        now[0] += waits[-1] + 5
    assert waits == [60, 120, 240, 480, 600, 600]
    now[0] += REPLACED_MEMORY_SECONDS + 1  # a quiet quarter of an hour: back to one minute
    assert retry_delay(Close.REPLACED, Backoff(), replaced) == 60
    assert ReplacedBackoff(clock=lambda: 0.0, rng=lambda: 1.0).next_delay() == pytest.approx(66)
    message = retry_message(Close.REPLACED, 60)
    assert "another connection of this device took over" in message and "60 s" in message
    assert retry_message(None, 1.5) == "reconnecting in 1.5 s"
