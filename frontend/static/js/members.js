// Members page (owners): asks before removing a member. Everything else is plain forms.
const state = window.sightline = { page: 'members', ready: false };

for (const form of document.querySelectorAll('form[data-confirm]')) {
  form.addEventListener('submit', (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
state.ready = true;
