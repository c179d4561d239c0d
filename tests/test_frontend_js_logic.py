"""The portal's pure JS decisions (frontend/static/js/lib/), run in Node: backoff, the H.264
codec string, wall clock <-> media time across gaps, and how a browser-device checks commands."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "frontend" / "static" / "js" / "lib"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run_js(module: str, body: str):
    """Import LIB/module as m, run body (which must `return` a JSON-able value)."""
    source = (f"import * as m from {json.dumps((LIB / module).as_uri())};\n"
              f"const result = (() => {{ {body} }})();\nconsole.log(JSON.stringify(result));")
    done = subprocess.run(["node", "--input-type=module", "-e", source], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_backoff_grows_exponentially_with_jitter_and_stays_under_the_cap():
    delays = run_js("socket.js", """
        const out = [];
        for (let attempt = 0; attempt < 12; attempt++) out.push(m.backoffDelay(attempt, 250, 10000));
        return out;""")
    assert 187 <= delays[0] <= 313  # 250 ms ± 25 %
    assert 375 <= delays[1] <= 625
    assert all(d <= 12500 for d in delays) and min(delays[8:]) >= 7500  # capped at 10 s ± 25 %


def test_close_reasons_are_readable_and_fatal_codes_stop_reconnecting():
    out = run_js("socket.js", "return [m.closeReason({code: 4404, reason: ''}), m.closeReason({code: 1006, reason: ''}), m.closeReason({code: 4999, reason: 'x'})];")
    assert out == ["no such device", "connection lost", "x"]
    fatal = run_js("protocol.js", "return [...m.FATAL_CLOSES].sort();")
    assert fatal == [4401, 4403, 4404]


def test_a_revoked_access_is_explained_and_reconnects_once_to_learn_what_is_left():
    assert run_js("socket.js", "return m.closeReason({code: 4013, reason: ''});") == "your access changed"
    assert run_js("protocol.js", "return [m.CLOSE.ACCESS_REVOKED, m.FATAL_CLOSES.has(4013)];") == [4013, False]


def test_the_avc_codec_string_comes_from_the_sps():
    out = run_js("player.js", """
        const au = new Uint8Array([0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xaa, 0, 0, 1, 0x68, 0xce]);
        const noSps = new Uint8Array([0, 0, 0, 1, 0x65, 0x88, 0x84]);
        return [m.avcCodecString(au), m.avcCodecString(noSps)];""")
    assert out == ["avc1.42c01e", None]


MAP = """
    const map = new m.MediaMap([
        {mediaStart: 0, duration: 2, wallStart: 1000000},
        {mediaStart: 2, duration: 2, wallStart: 1002000},
        {mediaStart: 4, duration: 3, wallStart: 1010000},  // 6 s gap before this one
    ]);"""


def test_wall_clock_maps_to_media_time_across_a_gap_and_back():
    out = run_js("mediamap.js", MAP + """
        return {
            inFirst: map.wallToMedia(1000500), inThird: map.wallToMedia(1011500),
            inGap: map.wallToMedia(1006000), before: map.wallToMedia(0), after: map.wallToMedia(1013000),
            back: map.mediaToWall(5.5), pastEnd: map.mediaToWall(8), covered: map.coveredUntil,
        };""")
    assert out == {"inFirst": 0.5, "inThird": 5.5, "inGap": 4, "before": 0, "after": None,
                   "back": 1011500, "pastEnd": None, "covered": 1013000}


def test_native_hls_map_is_built_from_segments_in_order():
    out = run_js("mediamap.js", """
        const map = m.mapFromSegments([
            {start: '2026-11-21T06:00:00Z', duration: 10}, {start: '2026-11-21T06:05:00Z', duration: 10}]);
        return [map.wallToMedia(Date.parse('2026-11-21T06:05:03Z')), map.length];""")
    assert out == [13, 2]


def test_a_browser_device_accepts_valid_settings_and_explains_invalid_ones():
    out = run_js("settings.js", """
        const v = (s) => m.validateSettings(s, {maxFps: 30});
        return [v({brightness: 40, contrast: -100, fps: 30, resolution: '1280x720'}),
                v({brightness: 101}), v({fps: 31}), v({fps: 2.5}), v({resolution: '4000x3000'}),
                v({zoom: 2}), v(null), m.parseResolution('320x180'), m.parseResolution('big')];""")
    assert out[0] is None
    assert out[1] == "invalid: brightness must be an integer in -100..100"
    assert out[2] == out[3] == "invalid: fps must be an integer in 1..30"
    assert out[4].startswith("invalid: resolution")
    assert out[5] == "invalid: this browser does not support setting zoom"
    assert out[6] == "invalid: settings must be an object"
    assert out[7:] == [[320, 180], [640, 360]]


def test_a_partial_export_is_never_announced_as_plainly_ready():
    partial, whole, waiting = run_js("export.js", """
        const coverage = {complete: false, requested_seconds: 7, covered_seconds: 4,
            covered: [['2025-11-21T04:40:01+00:00', '2025-11-21T04:40:05+00:00']],
            missing: [['2025-11-21T04:40:05+00:00', '2025-11-21T04:40:08+00:00']],
            note: 'covers 4.0 s of the 7.0 s asked (…); missing 04:40:05–04:40:08 UTC: 1 segment still being recorded or processed'};
        return [m.describeDone({state: 'done', bytes: 2048, complete: false, coverage}),
                m.describeDone({state: 'done', bytes: 2048, complete: true, coverage: {complete: true}}),
                m.describeProgress({state: 'running', waiting_for: 1, progress: 0.1,
                                    coverage: {segments: 3, waited_seconds: 4, max_wait_seconds: 120}})];""")
    assert partial.startswith("Export ready (2.0 KB), but it covers only 4 s of the 7 s asked: ")
    assert "Missing " in partial and partial.endswith("(1 segment still being recorded or processed).")
    assert whole == "Export ready: 2.0 KB, the whole range asked."
    assert waiting == "Waiting for 1 of 3 segments of this range, still being recorded or processed (4 of at most 120 s)…"


def test_a_finished_export_says_its_picture_segments_reencoded_parts_and_audio_left_out():
    full, plain, one, waiting = run_js("export.js", """
        const starts = {'aaaaaaaa-1': Date.UTC(2025, 10, 21, 4, 40, 2)};
        const startOf = (id) => starts[id] ?? null;
        const clockOf = (ms) => { const d = new Date(ms); return [d.getHours(), d.getMinutes(), d.getSeconds()]; };
        return [
          [m.describeCoverage({picture: [320, 240], segments: ['s0', 'aaaaaaaa-1', 'bbbbbbbb-2'],
                               reencoded: [{id: 'aaaaaaaa-1', reason: '256x144, the clip is 320x240'},
                                           {id: 'bbbbbbbb-2', reason: "other H.264 parameters than the clip's"}],
                               audio_left_out: ['bbbbbbbb-2']}, startOf), clockOf(starts['aaaaaaaa-1'])],
          m.describeCoverage({picture: [1280, 720], segments: ['a', 'b'], reencoded: []}),
          m.describeCoverage({picture: [640, 360], segments: ['a'], reencoded: []}),
          m.describeCoverage({waiting_for: 1, segments: 3}),
        ];""")
    text, (h, mi, sec) = full
    assert text == (f"320×240, 3 segments joined. Re-encoded to fit: {h:02}:{mi:02}:{sec:02} (256x144, the clip is "
                    "320x240); segment bbbbbbbb (other H.264 parameters than the clip's). "
                    "Audio left out: segment bbbbbbbb (other audio than the clip's).")
    assert plain == "1280×720, 2 segments joined."
    assert one == "640×360, 1 segment joined."
    assert waiting == ""  # the report while waiting has a count of segments, not the list


def test_player_modes_go_webrtc_webcodecs_mse_jpeg_by_capability_and_a_forced_one_goes_first():
    out = run_js("players/select.js", """
        const all = {webrtc: true, webcodecs: true, mse: true, jpeg: true};
        return [
          m.chooseModes(all, 'h264'),
          m.chooseModes({...all, webrtc: false, webcodecs: false}, 'h264'),
          m.chooseModes(all, 'h264', 'mse'),
          m.chooseModes(all, 'jpeg'),
          m.chooseModes(all, 'h264', 'nonsense'),
          m.forcedMode('?player=webrtc', null),
          m.forcedMode('?player=evil', {getItem: () => 'mse'}),
          m.forcedMode('', {getItem: () => null}),
        ];""")
    assert out == [["webrtc", "webcodecs", "mse", "jpeg"], ["mse", "jpeg"], ["mse", "webrtc", "webcodecs", "jpeg"],
                   ["jpeg"], ["webrtc", "webcodecs", "mse", "jpeg"], "webrtc", "mse", None]


def test_a_format_changed_bye_makes_the_webrtc_player_offer_again_instead_of_falling_back():
    out = run_js("players/select.js", """
        const modes = ['webrtc', 'webcodecs', 'mse', 'jpeg'];
        return [m.nextModeIndex(modes, 0, 'reoffer'), m.nextModeIndex(modes, 0, 'bye'),
                m.nextModeIndex(modes, 0, 'not_h264'), m.nextModeIndex(modes, 3, 'failed')];""")
    assert out == [0, 1, 3, 3]
    codes = run_js("players/webrtc.js", """
        const codes = [];
        const make = () => new m.WebrtcPlayer(null, {send: () => {}, onFail: (reason, code) => codes.push([reason, code])});
        make().handleText({type: 'webrtc_bye', code: 'format_changed', reason: 'device format changed'});
        make().handleText({type: 'webrtc_bye', reason: 'the WebRTC process is stopping'});
        return codes;""")
    assert codes == [["bye: device format changed", "reoffer"], ["bye: the WebRTC process is stopping", "bye"]]
