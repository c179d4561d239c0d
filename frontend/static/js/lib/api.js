// JSON over fetch with the session cookie and Django's CSRF token.
function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector('input[name=csrfmiddlewaretoken]');
  return input ? input.value : '';
}

export class HttpError extends Error {
  constructor(response, body) {
    super(body?.error || body?.detail || `${response.status} ${response.statusText}`);
    this.status = response.status;
    this.body = body;
  }
}

async function parse(response) {
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new HttpError(response, body);
  return body;
}

export async function getJson(url, { signal } = {}) {
  return parse(await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' }, signal }));
}

export async function postJson(url, data) {
  return parse(await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': csrfToken() },
    body: JSON.stringify(data),
  }));
}
