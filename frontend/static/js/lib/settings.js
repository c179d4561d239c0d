// Device settings a command may carry (docs/protocol.md section 4), checked the way a device does.
export const RESOLUTION = /^(\d{2,4})x(\d{2,4})$/;

export function parseResolution(value, fallback = [640, 360]) {
  const m = RESOLUTION.exec(value || '');
  return m ? [Number(m[1]), Number(m[2])] : fallback;
}

/** null if every setting is valid, else the error to put in the ack ("invalid: ..."). */
export function validateSettings(settings, { maxFps = 60, maxWidth = 1920, maxHeight = 1080 } = {}) {
  if (!settings || typeof settings !== 'object' || Array.isArray(settings)) return 'invalid: settings must be an object';
  for (const [key, value] of Object.entries(settings)) {
    if (key === 'brightness' || key === 'contrast') {
      if (!Number.isInteger(value) || value < -100 || value > 100) return `invalid: ${key} must be an integer in -100..100`;
    } else if (key === 'fps') {
      if (!Number.isInteger(value) || value < 1 || value > maxFps) return `invalid: fps must be an integer in 1..${maxFps}`;
    } else if (key === 'resolution') {
      const m = RESOLUTION.exec(String(value));
      if (!m || Number(m[1]) > maxWidth || Number(m[2]) > maxHeight) return `invalid: resolution must be WxH up to ${maxWidth}x${maxHeight}`;
    } else {
      return `invalid: this browser does not support setting ${key}`;
    }
  }
  return null;
}
