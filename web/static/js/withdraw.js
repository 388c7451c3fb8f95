// The case page's "Withdraw (entered in error)": a dialog that asks why (and whether the fiche was filed under
// the wrong patient), proves the caller's identity as a signature does, and posts
// POST /api/cases/{id}/decision/versions/{n}/withdraw (rcp.minutes.withdrawal_routes). The proof is the
// signature's own (decision.js, rcp.auth.reauth): the password and the authenticator's code, which may stay empty
// while the session's five-minute signing window is open; a session opened by an identity provider has no
// password here and confirms at the provider (a fresh login that opens the same window), then comes back.
// On success the page is loaded again, so the server renders the version as withdrawn (who, when, why).

import { api, ApiError, format, pageStrings, withBusy } from './api.js';

const S = pageStrings();

/** What a failed call says, in the page's language: the table's words for each refusal code. */
function refusal(error) {
  if (!(error instanceof ApiError)) return S.unreachable;
  return (S.refusals || {})[error.code] || error.message;
}

function mount(dialog) {
  const form = dialog.querySelector('[data-withdraw-form]');
  const title = dialog.querySelector('[data-withdraw-title]');
  const message = dialog.querySelector('[data-withdraw-message]');
  const progress = dialog.querySelector('[data-withdraw-progress]');
  const submit = dialog.querySelector('[data-withdraw-submit]');
  const provider = dialog.querySelector('[data-withdraw-provider]');
  let number = 0;
  let opener = null;

  const say = (text) => {
    message.textContent = text || '';
    message.hidden = !text;
  };

  document.querySelectorAll('[data-withdraw]').forEach((button) => {
    button.addEventListener('click', () => {
      number = Number(button.dataset.withdraw);
      opener = button;
      form.reset();
      say('');
      progress.textContent = '';
      if (provider) provider.hidden = true;
      title.textContent = format(S.title, { number });
      dialog.showModal();
      form.elements.reason.focus();
    });
  });
  dialog.querySelector('[data-withdraw-cancel]').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => { if (opener) opener.focus(); });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (submit.getAttribute('aria-busy') === 'true') return;
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      say(S.reason_required);
      form.elements.reason.focus();
      return;
    }
    const body = { reason, wrong_patient: form.elements.wrong_patient.checked };
    if (form.elements.password) {
      body.password = form.elements.password.value;
      body.code = form.elements.code.value.trim();
    }
    say('');
    progress.textContent = S.withdrawing;
    withBusy(submit, async () => {
      try {
        await api('POST', dialog.dataset.url.replace('{number}', String(number)), body);
      } catch (error) {
        progress.textContent = '';
        const code = error instanceof ApiError ? error.code : '';
        if (provider && (code === 'reauthentication_required' || code === 'reauthentication_failed')) {
          // The identity provider proves who this is (rcp.auth.sso's confirm), then brings the page back.
          provider.hidden = false;
          say(S.confirm_at_provider);
        } else {
          say(refusal(error));
          if (code.startsWith('reauthentication') && form.elements.password) form.elements.password.focus();
        }
        return;
      }
      window.location.hash = `withdrawn-${number}`;
      window.location.reload();
      await new Promise(() => {}); // stay busy while the page loads again
    });
  });
}

const dialog = document.querySelector('[data-withdraw-dialog]');
if (dialog) mount(dialog);
