// The one way page scripts talk to the JSON API: same-origin fetch with the session's CSRF token, JSON in and
// out, errors as ApiError carrying the server's {"error", "message", "fields"}; plus small page helpers (busy
// buttons, field errors next to inputs, a status toast). Imported by the other modules; on its own it gives
// every form marked data-busy a busy state while it submits.

/** An API call that did not succeed; `fields` maps field names to messages. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = (body && body.error) || '';
    this.fields = (body && body.fields) || {};
  }
}

/** The session's CSRF token, from <meta name="csrf-token"> in base.html. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute('content') || '' : '';
}

/**
 * Call the API. `body` (an object) is sent as JSON. Resolves to the parsed JSON (null for 204); rejects with
 * ApiError for an error status, or with a TypeError when the network fails.
 */
export async function api(method, url, body = undefined, { signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (!['GET', 'HEAD', 'OPTIONS'].includes(method.toUpperCase())) headers['X-CSRF-Token'] = csrfToken();
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  if (response.status === 204) return null;
  const isJson = (response.headers.get('content-type') || '').includes('json');
  const data = isJson ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data || { message: response.statusText });
  return data;
}

/** Run `work` with `button` disabled and marked busy (spinner) until it settles. */
export async function withBusy(button, work) {
  if (!button) return work();
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = wasDisabled;
    button.removeAttribute('aria-busy');
  }
}

/** Page strings (already translated by the server) from <script type="application/json" id="page-strings">. */
export function pageStrings() {
  const node = document.getElementById('page-strings');
  try {
    return node ? JSON.parse(node.textContent || '{}') : {};
  } catch {
    return {};
  }
}

/** "%(name)s" placeholders, as in the server's gettext strings. */
export function format(template, values = {}) {
  return String(template || '').replace(/%\((\w+)\)s/g, (_, key) => (key in values ? String(values[key]) : ''));
}

/**
 * Show `fields` ({name: message}) next to the inputs of `form` (elements with data-field="name" and a
 * .field-error inside, as the server renders them); clears previous messages. Returns the unmatched ones.
 */
export function showFieldErrors(form, fields = {}) {
  for (const box of form.querySelectorAll('[data-field]')) {
    box.classList.remove('has-error');
    const message = box.querySelector('.field-error');
    if (message) { message.hidden = true; message.textContent = ''; }
    box.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  }
  const unmatched = {};
  for (const [name, text] of Object.entries(fields)) {
    const box = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    const message = box && box.querySelector('.field-error');
    if (!message) { unmatched[name] = text; continue; }
    box.classList.add('has-error');
    message.hidden = false;
    message.textContent = text;
    box.querySelectorAll('input, select, textarea').forEach((el) => el.setAttribute('aria-invalid', 'true'));
  }
  return unmatched;
}

let toastTimer = 0;

/** A short status message in the corner (role=status, read by screen readers). */
export function toast(message, kind = 'info', ms = 3500) {
  const node = document.querySelector('[data-toast]');
  if (!node) return;
  node.textContent = message;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  if (ms > 0) toastTimer = setTimeout(() => { node.hidden = true; }, ms);
}

/** Forms marked data-busy show a busy submit button while the browser posts them (no double submit). */
function markBusyForms() {
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-busy') || event.defaultPrevented) return;
    const button = event.submitter || form.querySelector('button[type="submit"], button:not([type])');
    if (!button) return;
    if (button.getAttribute('aria-busy') === 'true') { event.preventDefault(); return; }
    // Disable after the submit has captured the button's name/value (a disabled submitter is not sent).
    setTimeout(() => { button.setAttribute('aria-busy', 'true'); button.disabled = true; }, 0);
  });
  // Pages restored from the back/forward cache must not keep a busy button.
  window.addEventListener('pageshow', () => {
    document.querySelectorAll('button[aria-busy="true"]').forEach((b) => { b.removeAttribute('aria-busy'); b.disabled = false; });
  });
}

if (!window.__rcpBusyForms) {
  window.__rcpBusyForms = true;
  markBusyForms();
}
