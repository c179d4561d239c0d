"""The browser's protocol module (frontend/static/js/lib/protocol.js) against the reference
implementation in agent/sightline_agent/protocol.py, run in Node: byte-for-byte the same header."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sightline_agent import protocol

MODULE = Path(__file__).resolve().parent.parent / "frontend" / "static" / "js" / "lib" / "protocol.js"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run_node(script: str) -> dict:
    source = f"import * as p from {json.dumps(MODULE.as_uri())};\n{script}"
    done = subprocess.run(["node", "--input-type=module", "-e", source], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_js_encodes_a_frame_exactly_like_python():
    out = run_node("""
        const payload = new Uint8Array([1, 2, 3, 4, 5]);
        const [m] = p.encodeFrame(p.KIND_JPEG, payload, 4294967295, 1763700000123456, {keyframe: true});
        console.log(JSON.stringify({hex: Buffer.from(m).toString('hex')}));
    """)
    [expected] = protocol.encode_frame(protocol.KIND_JPEG, bytes([1, 2, 3, 4, 5]), 4294967295, 1763700000123456, keyframe=True)
    assert out["hex"] == expected.hex()


def test_js_chunks_big_frames_like_python_and_python_reassembles_them():
    out = run_node("""
        const payload = new Uint8Array(250).map((_, i) => i);
        const ms = p.encodeFrame(p.KIND_H264, payload, 7, 1000, {maxMessageBytes: 124});
        console.log(JSON.stringify({hex: ms.map((m) => Buffer.from(m).toString('hex'))}));
    """)
    expected = protocol.encode_frame(protocol.KIND_H264, bytes(range(250)), 7, 1000, max_message_bytes=124)
    assert out["hex"] == [m.hex() for m in expected]
    reassembler = protocol.Reassembler(max_frame_bytes=1 << 20)
    frames = [reassembler.feed(bytes.fromhex(h)) for h in out["hex"]]
    assert frames[-1].payload == bytes(range(250)) and frames[:-1] == [None, None]


def test_js_parses_what_python_sends_to_viewers():
    frame = protocol.Frame(protocol.FrameHeader(protocol.KIND_JPEG, protocol.FLAG_KEYFRAME, 42, 1763700000999999), b"\xff\xd8jpeg")
    out = run_node(f"""
        const bytes = Buffer.from({json.dumps(frame.to_message().hex())}, 'hex');
        const f = p.parseFrame(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
        console.log(JSON.stringify({{kind: f.kind, seq: f.seq, ts: f.timestampUs, keyframe: f.keyframe,
            count: f.chunkCount, length: f.frameLength, payload: Buffer.from(f.payload).toString('hex')}}));
    """)
    assert out == {"kind": 1, "seq": 42, "ts": 1763700000999999, "keyframe": True, "count": 1,
                   "length": 6, "payload": b"\xff\xd8jpeg".hex()}


def test_js_rejects_a_bad_magic_byte_and_a_short_message():
    out = run_node("""
        const errors = [];
        for (const bytes of [new Uint8Array(10), new Uint8Array(24)]) {
            try { p.parseFrame(bytes.buffer); errors.push(null); } catch (e) { errors.push(e.message); }
        }
        console.log(JSON.stringify({errors}));
    """)
    assert "shorter than the header" in out["errors"][0]
    assert "bad magic" in out["errors"][1]
