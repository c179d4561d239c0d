"""Pacing (pacing.py) and adapting (adapt.py), on a clock the test moves."""
import pytest

from sightline_agent.adapt import UP_AFTER_WINDOWS, WINDOW_SECONDS, Adapter, Level, ladder
from sightline_agent.pacing import RATE_MARGIN, Pacer, rate_text

MB = 1_000_000
LIMITS = {"max_fps": 60, "max_bytes_per_second": MB, "max_messages_per_second": 1000, "burst_seconds": 2.0}


def run_video(pacer: Pacer, seconds: float, fps: float, size: int, keyframe_every: int = 1, grouped=False):
    """Offer `fps` frames of `size` bytes for `seconds`; returns the (time, keyframe) of those admitted."""
    sent = []
    for index in range(int(seconds * fps)):
        now = index / fps
        keyframe = index % keyframe_every == 0
        if pacer.admit_video([size], keyframe, grouped, now):
            sent.append((now, keyframe))
    return sent


def test_a_source_within_the_limits_is_never_held_back():
    pacer = Pacer(LIMITS, 0.0)
    sent = run_video(pacer, 60, 10, 80_000)  # 0.8 MB/s against 0.9 MB/s paced
    assert len(sent) == 600 and pacer.skipped == 0


def test_a_source_at_twice_the_byte_limit_is_held_to_the_margin_of_it():
    pacer = Pacer(LIMITS, 0.0)
    sent = run_video(pacer, 60, 20, 100_000)  # 2 MB/s offered
    burst = RATE_MARGIN * MB * 2.0
    assert len(sent) * 100_000 <= RATE_MARGIN * MB * 60 + burst
    assert len(sent) * 100_000 >= RATE_MARGIN * MB * 60 * 0.9  # not starved either
    assert pacer.skipped == 1200 - len(sent) and pacer.limited_by == "bytes"
    assert pacer.offered_rate(60.0) == pytest.approx(2 * MB, rel=0.01)


def test_after_a_skipped_h264_frame_the_rest_of_its_group_waits_for_a_keyframe():
    pacer = Pacer(LIMITS, 0.0)
    sent = run_video(pacer, 30, 25, 60_000, keyframe_every=25, grouped=True)  # 1.5 MB/s, a keyframe a second
    assert 0 < len(sent) < 750
    # Every run of frames sent starts on a keyframe and has no hole: nothing refers to a skipped frame.
    for (t0, _), (t1, keyframe) in zip(sent, sent[1:]):
        assert keyframe or t1 - t0 == pytest.approx(1 / 25), (t0, t1)


def test_jpeg_frames_are_skipped_one_at_a_time():
    pacer = Pacer(LIMITS, 0.0)
    sent = run_video(pacer, 30, 25, 60_000, keyframe_every=25, grouped=False)
    gaps = [t1 - t0 for (t0, _), (t1, _) in zip(sent, sent[1:])]
    assert max(gaps) < 0.2  # evenly thinned, no second-long pauses


def test_audio_keeps_going_when_video_has_used_its_share():
    pacer = Pacer(LIMITS, 0.0)
    audio_sent = 0
    for tick in range(3000):  # 60 s in 20 ms steps: 640-byte audio each, a 50 kB video frame each
        now = tick * 0.02
        pacer.admit_video([50_000], True, False, now)
        audio_sent += pacer.admit_other([640 + 24], now)
    assert audio_sent == 3000


def test_the_frame_rate_limit_has_no_margin_but_an_overrunning_source_gets_max_fps():
    pacer = Pacer({**LIMITS, "max_fps": 10}, 0.0)
    assert len(run_video(pacer, 60, 10, 1000)) == 600  # exactly max_fps: nothing skipped
    pacer = Pacer({**LIMITS, "max_fps": 10}, 0.0)
    sent = run_video(pacer, 60, 25, 1000)
    assert 580 <= len(sent) <= 10 * 60 + 20 and pacer.limited_by == "frames"


def test_every_chunk_counts_as_a_message():
    pacer = Pacer({**LIMITS, "max_messages_per_second": 100, "max_bytes_per_second": 100 * MB}, 0.0)
    sent = run_video(pacer, 10, 30, 0)
    assert len(sent) == 300
    pacer = Pacer({**LIMITS, "max_messages_per_second": 100, "max_bytes_per_second": 100 * MB}, 0.0)
    sent = []
    for index in range(300):
        now = index / 30
        if pacer.admit_video([1000] * 5, True, False, now):  # five chunks a frame: 150 messages/s
            sent.append(now)
    assert len(sent) * 5 <= 100 * RATE_MARGIN * 10 + 100 * RATE_MARGIN * 2
    assert pacer.limited_by == "messages"


def test_a_limit_the_welcome_does_not_carry_is_not_paced():
    pacer = Pacer({"max_fps": 60}, 0.0)
    assert len(run_video(pacer, 10, 30, 5 * MB)) == 300 and pacer.budget is None


def test_rates_are_written_in_decimal_units():
    assert rate_text(MB) == "1.0 MB/s" and rate_text(8 * 1024 * 1024) == "8.4 MB/s" and rate_text(250_000) == "250 kB/s"


# -- adapting -------------------------------------------------------------------------------


def test_the_ladder_lowers_quality_first_then_the_frame_rate():
    assert ladder(10, 75) == [Level(10, 75), Level(10, 60), Level(10, 50), Level(10, 40), Level(7, 40),
                              Level(4, 40), Level(2, 40), Level(1, 40), Level(1, 25), Level(1, 10)]
    assert ladder(10, None) == [Level(10, None), Level(7, None), Level(4, None), Level(2, None), Level(1, None)]
    assert ladder(1, 30) == [Level(1, 30), Level(1, 25), Level(1, 10)]


def simulate(adapter: Adapter, budget: float, frame_bytes, seconds: float, start: float = 0.0):
    """Offer the adapter's current level for `seconds`; frame_bytes(quality) is the scene."""
    now, changes = start, 0
    while now < start + seconds:
        level = adapter.level
        adapter.on_offered(frame_bytes(level.quality))
        now += 1 / level.fps
        changes += adapter.decide(budget, now)
    return now, changes


def jpeg_scene(scale: float):
    """Sizes that shrink with quality about as the test pattern's do (15-25 % a step)."""
    return lambda quality: int(scale * {75: 1.0, 60: 0.8, 50: 0.7, 40: 0.6, 25: 0.5, 10: 0.4}[quality])


def test_a_source_far_over_the_budget_comes_under_it_within_a_few_windows_and_stays():
    adapter = Adapter(30, 75, 0.0)
    scene = jpeg_scene(100_000)  # 3 MB/s at the top
    now, changes = simulate(adapter, 0.9 * MB, scene, 10)
    level = adapter.level
    assert level.fps * scene(level.quality) <= 0.9 * MB
    assert level.fps >= 10  # not pushed further down than needed (15 fps at q40 is 0.9 MB/s)
    _, later = simulate(adapter, 0.9 * MB, scene, 60, start=now)
    assert later <= 3  # steady: at most a try up that is taken back, then a longer wait


def test_it_climbs_back_when_the_scene_gets_cheaper_only_after_quiet_windows():
    adapter = Adapter(10, 75, 0.0)
    now, _ = simulate(adapter, 0.9 * MB, jpeg_scene(10 * MB), 10)  # over even at the bottom: never quiet
    low = adapter.index
    assert adapter.level == Level(1, 10)
    quiet = jpeg_scene(10_000)  # night: 100 kB/s at the top level
    now, _ = simulate(adapter, 0.9 * MB, quiet, (UP_AFTER_WINDOWS - 1) * WINDOW_SECONDS, start=now)
    assert adapter.index == low  # not yet: two quiet windows are not enough
    simulate(adapter, 0.9 * MB, quiet, 120, start=now)
    assert adapter.index == 0 and not adapter.reduced


def test_a_scene_just_under_the_budget_does_not_flap():
    adapter = Adapter(10, 75, 0.0)
    adapter.index = 1  # 10 fps at q60: 85 % of the budget; q75 would be 106 %
    _, changes = simulate(adapter, 0.9 * MB, lambda q: int(0.85 * 0.9 * MB / 10 * (1.25 if q == 75 else 1)), 60)
    assert changes == 0 and adapter.level == Level(10, 60)


def test_a_step_up_taken_back_at_once_doubles_the_wait_for_the_next():
    adapter = Adapter(10, 75, 0.0)
    adapter.index = 1
    # The model guesses q75 costs 1.25 x q60; this scene's q75 costs 3 x (a big step): up, then down.
    scene = lambda q: 50_000 if q == 60 else 180_000  # noqa: E731
    _, changes = simulate(adapter, 0.9 * MB, scene, 60)
    assert adapter.up_after > UP_AFTER_WINDOWS
    assert changes <= 6  # 3, 6, 12 windows between tries: not a change every few seconds


def test_skipped_frames_step_down_even_when_the_window_average_fits():
    adapter = Adapter(10, 75, 0.0)
    adapter.on_offered(1000, skipped=True)
    assert adapter.decide(0.9 * MB, WINDOW_SECONDS) and adapter.index == 1


def test_skips_just_after_a_step_down_do_not_push_it_further():
    adapter = Adapter(10, 75, 0.0)
    adapter.on_offered(10 * MB)
    assert adapter.decide(0.9 * MB, WINDOW_SECONDS)
    level = adapter.index
    adapter.on_offered(1000, skipped=True)  # the drained buckets refilling
    assert not adapter.decide(0.9 * MB, 2 * WINDOW_SECONDS) and adapter.index == level
    adapter.on_offered(1000, skipped=True)  # a window later, a skip is the level's own
    assert adapter.decide(0.9 * MB, 3 * WINDOW_SECONDS) and adapter.index == level + 1


def test_an_unlimited_budget_never_adapts():
    adapter = Adapter(10, 75, 0.0)
    adapter.on_offered(10 * MB)
    assert not adapter.decide(None, 10.0) and adapter.index == 0


# -- in the agents ------------------------------------------------------------------------


def test_a_relayed_camera_over_the_byte_limit_is_skipped_to_keyframes_and_warned_about_once():
    import io

    from sightline_agent.encoders import EncodedFrame
    from sightline_agent.passthrough import PassthroughAgent
    from sightline_agent.protocol import KIND_H264, encode_frame
    from sightline_agent.rtsp import CameraInfo, RtspCamera
    from sightline_agent.session import AgentConfig
    from sightline_agent.status import Counters, StatusLine

    camera = RtspCamera("rtsp://u:secret@10.0.0.5/live")
    camera.info = CameraInfo(1920, 1080, 25.0, None)
    out = io.StringIO()
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), camera,
                             StatusLine(Counters(), stream=out))
    agent._apply_welcome({"type": "welcome", "device_id": "d",
                          "limits": {"max_fps": 30, "max_bytes_per_second": 500_000, "burst_seconds": 2.0}})
    assert agent.adapter is None  # nothing to adapt in a relayed stream
    admitted = []
    for index in range(100):
        frame = EncodedFrame(KIND_H264, b"x" * 60_000, index % 25 == 0)  # 1.5 MB/s
        admitted.append(agent._admit(frame, "video", encode_frame(KIND_H264, frame.payload, 1, 0, frame.keyframe)))
    assert 0 < sum(admitted) < 100 and agent.counters.frames_skipped == 100 - sum(admitted)
    for index in range(1, 100):  # once skipping began, only a keyframe starts sending again
        assert not admitted[index] or admitted[index - 1] or index % 25 == 0
    text = out.getvalue()
    assert text.count("WARNING") == 1 and "above the 500 kB/s the server allows" in text
    assert "to the next keyframe" in text and "secret" not in text


def test_the_agents_own_jpeg_quality_follows_the_adapter_and_returns_on_a_new_connection():
    from sightline_agent.encoders import JpegEncoder
    from sightline_agent.session import Agent, AgentConfig
    from sightline_agent.sources import PatternSource

    encoder = JpegEncoder(75)
    agent = Agent(AgentConfig(url="ws://x/ws/device/", token="t", fps=10), PatternSource(), encoder)
    welcome = {"type": "welcome", "device_id": "d", "limits": {"max_fps": 60, "max_bytes_per_second": 100_000}}
    agent._apply_welcome(welcome)
    agent.adapter.on_offered(10 * MB)
    agent.adapter.window_start -= WINDOW_SECONDS
    agent._adapt()
    assert encoder.quality == 10 and agent._video_fps() == 1  # 100 times over: the bottom of the ladder
    assert agent.counters.paced == "1 fps at quality 10 under 100 kB/s"
    agent._apply_welcome(welcome)  # reconnected: the server's buckets are full again
    assert encoder.quality == 75 and agent._video_fps() == 10 and agent.counters.paced == ""
    agent.config.pacing = False
    agent.pacer = agent.adapter = None
    agent._apply_welcome(welcome)
    assert agent.pacer is None and agent._video_fps() == 10
