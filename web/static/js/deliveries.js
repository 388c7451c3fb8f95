// The EPR delivery state on the meeting and case pages: the server renders the fragment
// (/epr/cases/{id}/deliveries or /epr/meetings/{id}/deliveries); this script puts it in place, refreshes it while
// the page is open (deliveries move on in the background), and sends "Retry" without leaving the page.
import { csrfToken } from './api.js';

const REFRESH_MS = 15000;

async function load(container) {
  const url = container.dataset.deliveriesUrl;
  try {
    const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    container.innerHTML = await response.text();
    container.removeAttribute('aria-busy');
  } catch (error) {
    container.removeAttribute('aria-busy');
    const message = container.dataset.errorText || 'The delivery state could not be loaded; it will be tried again.';
    container.replaceChildren(Object.assign(document.createElement('p'), { className: 'error', textContent: message }));
  }
}

async function retry(container, form) {
  const button = form.querySelector('button');
  if (button) { button.disabled = true; button.setAttribute('aria-busy', 'true'); }
  try {
    const response = await fetch(form.action, {
      method: 'POST', credentials: 'same-origin', redirect: 'manual',
      headers: { 'X-CSRF-Token': csrfToken() },
    });
    if (response.status >= 400) throw new Error(`HTTP ${response.status}`);
  } finally {
    await load(container);
  }
}

for (const container of document.querySelectorAll('[data-deliveries-url]')) {
  container.setAttribute('aria-busy', 'true');
  load(container);
  setInterval(() => { if (!document.hidden) load(container); }, REFRESH_MS);
  container.addEventListener('submit', (event) => {
    const form = event.target.closest('form');
    if (!form || !form.action.includes('/epr/deliveries/')) return;
    event.preventDefault();
    retry(container, form);
  });
}
