// Token page of the admin (shown once, after a device is created or a token issued):
// a copy button and a download for each token, and for the agent's command line.
// The download is made here from the page's own text (a Blob), so the token never
// travels in a URL and the server never serves it a second time.
const state = window.sightline = { page: 'device-token', copied: null, downloaded: null };

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http on a non-local address: no Clipboard API, fall back to a selection.
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('copy refused');
}

function flash(button, text) {
  const before = button.dataset.label || button.textContent;
  button.dataset.label = before;
  button.textContent = text;
  setTimeout(() => { button.textContent = before; }, 2000);
}

for (const button of document.querySelectorAll('button[data-copy]')) {
  button.addEventListener('click', async () => {
    const source = document.getElementById(button.dataset.copy);
    try {
      await copyText(source.textContent.trim());
      state.copied = button.dataset.copy;
      flash(button, 'Copied');
    } catch (error) {
      flash(button, 'Copy failed: select and copy by hand');
    }
  });
}

for (const button of document.querySelectorAll('button[data-download]')) {
  button.addEventListener('click', () => {
    const source = document.getElementById(button.dataset.download);
    const blob = new Blob([`${source.textContent.trim()}\n`], { type: 'text/plain' });
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = button.dataset.filename || 'device.token';
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    state.downloaded = link.download;
  });
}
