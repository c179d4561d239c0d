// WebRTC player: signalling over the viewer socket (docs/protocol.md "WebRTC"), H.264 over RTP
// from the WebRTC process (manage.py webrtc) into a <video>. Fails fast (onFail) on a
// webrtc_error, a webrtc_bye, ICE failure, or no frame soon after connecting; asks for a fresh
// offer (code 'reoffer') on a bye with code format_changed.

export class WebrtcPlayer {
  static supported() { return typeof RTCPeerConnection !== 'undefined'; }

  constructor(video, { send, iceServers = [], onFrame = () => {}, onFail = () => {} }) {
    this.video = video;
    this.send = send;
    this.iceServers = iceServers;
    this.onFrame = onFrame;
    this.onFail = onFail;
    this.pc = null;
    this.session = null;
    this.captureToPeerMs = null;
    this.latencyMs = null;
    this.framesDecoded = 0;
    this.failed = false;
    this.statsTimer = null;
    this.timings = {};  // ms since navigation start: offer, answer, connected (what a first frame waits for)
  }

  async start() {
    // No frames over the socket while WebRTC plays; signalling only.
    this.send({ type: 'subscribe', kinds: [] });
    const pc = this.pc = new RTCPeerConnection({ iceServers: this.iceServers });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (event) => {
      this.video.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.video.play().catch(() => {});
    };
    pc.onicecandidate = (event) => {
      // Trickle: each candidate as it comes, then null (end-of-candidates).
      const c = event.candidate;
      this.send({ type: 'webrtc_candidate', candidate: c && c.candidate ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') this.timings.connected = performance.now();
      if (pc.connectionState === 'failed') this.fail('ICE/DTLS connection failed');
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (this.pc !== pc) return;  // stopped meanwhile
    this.send({ type: 'webrtc_offer', sdp: pc.localDescription.sdp });
    this.timings.offer = performance.now();
    this.statsTimer = setInterval(() => this.readStats(), 500);
  }

  /** A text message from the viewer socket; true if it was for this player. */
  handleText(message) {
    if (!message.type || !message.type.startsWith('webrtc_')) return false;
    if (message.session && this.session && message.session !== this.session) return true;
    switch (message.type) {
      case 'webrtc_answer':
        this.session = message.session;
        this.timings.answer = performance.now();
        this.pc?.setRemoteDescription({ type: 'answer', sdp: message.sdp }).catch((e) => this.fail(`answer: ${e}`));
        break;
      case 'webrtc_candidate':
        if (message.candidate) this.pc?.addIceCandidate(message.candidate).catch(() => {});
        break;
      case 'webrtc_stats':
        this.captureToPeerMs = message.capture_to_peer_ms;
        break;
      case 'webrtc_error':
        this.fail(`${message.code}: ${message.message}`, message.code);
        break;
      case 'webrtc_bye':
        // format_changed: the device came back with another audio format; a fresh offer fits it.
        this.fail(`bye: ${message.reason || ''}`, message.code === 'format_changed' ? 'reoffer' : 'bye');
        break;
      default:
        break;
    }
    return true;
  }

  /** framesDecoded from getStats, and a capture → display latency estimate: capture → WebRTC
   * process (sent by the server) + half the round trip + jitter buffer + decode. */
  async readStats() {
    if (!this.pc) return;
    const report = await this.pc.getStats();
    let rtt = 0, inbound = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
      if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime) rtt = s.currentRoundTripTime * 1000;
    });
    if (!inbound) return;
    const decoded = inbound.framesDecoded || 0;
    const emitted = inbound.jitterBufferEmittedCount || 0;
    const buffer = emitted ? (inbound.jitterBufferDelay / emitted) * 1000 : 0;
    const decode = decoded ? (inbound.totalDecodeTime / decoded) * 1000 : 0;
    if (this.captureToPeerMs !== null) this.latencyMs = this.captureToPeerMs + rtt / 2 + buffer + decode;
    if (decoded > this.framesDecoded) {
      this.framesDecoded = decoded;
      this.onFrame({ framesDecoded: decoded, latencyMs: this.latencyMs });
    }
  }

  fail(reason, code = 'failed') {
    if (this.failed) return;
    this.failed = true;
    this.onFail(reason, code);
  }

  stop() {
    clearInterval(this.statsTimer);
    if (this.pc) {
      this.send({ type: 'webrtc_bye' });
      this.pc.close();
      this.pc = null;
    }
    this.video.srcObject = null;
  }
}
