/**
 * The join page: the guest's token arrives in the URL fragment (#...), which browsers never send to a server, so it
 * reaches no access log and no Referer. Move it into the confirmation form and strip it from the address bar (and
 * so from the history); keep it for this tab only, so that switching the language does not lose it. Nothing is used
 * up until the guest presses the button (mail scanners open links, they do not submit forms).
 */
const KEY = 'rcp-join-token';
const form = document.querySelector('[data-join-form]');
const missing = document.querySelector('[data-join-missing]');
const fromUrl = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : '';
if (fromUrl) {
  sessionStorage.setItem(KEY, fromUrl);
  history.replaceState(null, '', location.pathname);
}
const token = sessionStorage.getItem(KEY) || '';
if (form && token && !document.querySelector('[data-join-page] .alert-error')) {
  form.elements.token.value = token;
  form.hidden = false;
  if (missing) missing.hidden = true;
  form.addEventListener('submit', () => sessionStorage.removeItem(KEY));
} else {
  sessionStorage.removeItem(KEY);
}
