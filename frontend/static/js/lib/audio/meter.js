// A level meter: a <meter> element fed about 15 times a second from a level function (0..1).
// The level is shown on a dB-like scale so speech and quiet tones move it visibly.
export function levelToMeter(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);          // -60 dB .. 0 dB -> 0 .. 1
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

export function startMeter(element, level, onValue = () => {}) {
  const timer = setInterval(() => {
    const value = levelToMeter(level());
    element.value = value;
    onValue(value);
  }, 66);
  return () => clearInterval(timer);
}
