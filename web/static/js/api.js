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

/**
 * Forms marked data-enhance are posted with fetch (same fields, the CSRF token as a header, and
 * X-Requested-With: rcp-form); the page answers JSON: {"location"} to go on, or {"message", "fields"} with
 * messages in the user's language, shown next to the inputs without reloading. Anything else (a network
 * failure, an unexpected answer) falls back to an ordinary post, so the form never gets stuck.
 */
async function submitEnhanced(form, body) {
  let response;
  try {
    response = await fetch(form.action, {
      method: 'POST',
      body,
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-Requested-With': 'rcp-form', 'X-CSRF-Token': csrfToken() },
    });
  } catch {
    form.submit();
    return;
  }
  const isJson = (response.headers.get('content-type') || '').includes('json');
  const data = isJson ? await response.json().catch(() => null) : null;
  if (response.ok && data && data.location) {
    const next = new URL(data.location, window.location.href);
    const here = new URL(window.location.href);
    // Same address but for the #fragment: assigning would only scroll, so load the page again.
    if (next.pathname === here.pathname && next.search === here.search) {
      if (next.hash) window.history.replaceState(null, '', next.href);
      window.location.reload();
    } else {
      window.location.assign(next.href);
    }
    await new Promise(() => {}); // keep the button busy while the next page loads
  }
  if (!data || !('fields' in data || 'message' in data)) {
    form.submit();
    return;
  }
  const unmatched = showFieldErrors(form, data.fields || {});
  const slot = form.querySelector('[data-form-message]');
  if (slot) {
    const extra = Object.values(unmatched);
    slot.textContent = [data.message, ...extra].filter(Boolean).join(' ');
    slot.hidden = !slot.textContent;
  }
  const first = form.querySelector('[aria-invalid="true"]') || slot;
  if (first) {
    first.scrollIntoView({ block: 'center', behavior: 'smooth' });
    if (first.focus) first.focus({ preventScroll: true });
  }
}

function enhanceForms() {
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-enhance') || event.defaultPrevented) return;
    event.preventDefault();
    const submitter = event.submitter || form.querySelector('button[type="submit"], button:not([type])');
    if (submitter && submitter.getAttribute('aria-busy') === 'true') return;
    // Read the fields (and the submitter's name=value) before the button is disabled.
    const body = new URLSearchParams(new FormData(form, submitter || undefined));
    withBusy(submitter, () => submitEnhanced(form, body));
  });
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
  enhanceForms();
  markBusyForms();
}
