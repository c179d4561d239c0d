// Remove-device page (owners): the button says what the chosen option does, and deleting
// recordings asks once more, since it cannot be undone.
const form = document.getElementById('remove-device');
const button = document.getElementById('remove-submit');
const count = document.getElementById('recording-count').textContent.trim();
const state = window.sightline = { page: 'device-remove', ready: false, choice: null };

function chosen() {
  const input = form.querySelector('input[name=recordings]:checked');
  return input ? input.value : null;
}

function update() {
  state.choice = chosen();
  button.disabled = state.choice === null;
  button.textContent = state.choice === 'delete' ? `Delete device and ${count} recording(s)`
    : state.choice === 'archive' ? 'Archive device' : 'Remove device';
}

form.addEventListener('change', update);
form.addEventListener('submit', (event) => {
  if (chosen() === 'delete' && !window.confirm(`Delete this device and its ${count} recording(s)? This cannot be undone.`)) {
    event.preventDefault();
  }
});
update();
state.ready = true;
