/**
 * The case page's imaging panel (web/templates/imaging/case_studies.html): the patient's studies in the archive
 * with attach/detach, the prefetch for the meeting, the import of DICOM files or a zip, and the viewer.
 *
 * Why in the page and not a separate app: the coordinator chasing missing images and the clinician checking them
 * before the meeting both start from the case. Every part fails on its own: a PACS that is down empties the study
 * list with a message and a "try again" button, while the import, the case form and the viewer keep working.
 *
 * For tests and other scripts the panel is reachable as `window.caseImaging` ({viewer, reload, attach, ...})
 * and the viewer as `window.caseViewer` (the createViewer API of viewer.js).
 */

import {ApiError, api, csrfToken} from './api.js';
import {createViewer, seriesMetaUrl} from './viewer.js';

const PREFETCH_POLL_MS = 1000;

/** "{name}" placeholders (the server-side strings avoid "%" so that gettext leaves them alone). */
export function fill(template, values = {}) {
  return String(template ?? '').replace(/\{(\w+)\}/g, (m, key) => (key in values ? String(values[key]) : m));
}

/** DICOM DA (YYYYMMDD, PS3.5 6.2) as a date in the page's language; the raw value when it is not a date. */
export function formatStudyDate(da, locale) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(String(da ?? '').trim());
  if (!m) return String(da ?? '');
  const date = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  try {
    return new Intl.DateTimeFormat(locale || undefined, {dateStyle: 'medium', timeZone: 'UTC'}).format(date);
  } catch {
    return `${m[1]}-${m[2]}-${m[3]}`;
  }
}

/** The message a person can act on, for an API failure (never the server's stack, never patient data). */
export function describeError(err, strings) {
  if (err instanceof ApiError || (err && typeof err.status === 'number')) {
    const status = err.status;
    if (status === 502 || status === 503 || status === 504) {
      return err.message && err.message !== `HTTP ${status}` ? `${strings.unreachable} (${err.message})`
        : strings.unreachable;
    }
    if (status === 404) return strings.not_found;
    if (status === 403) return strings.forbidden;
    if (status === 401) return strings.signed_out;
    if (status === 413) return strings.upload_too_large;
    if (status === 0) return strings.network;
    const detail = err.message && err.message !== `HTTP ${status}` ? ` ${err.message}` : '';
    return fill(strings.failed, {status}) + detail;
  }
  return strings.network;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'role' || key === 'colspan'
             || key === 'title' || key === 'for' || key === 'id' || key === 'type') node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export class CaseImaging {
  constructor(root) {
    this.root = root;
    this.caseId = Number(root.dataset.caseId);
    this.manage = root.dataset.manage === 'true';
    this.locale = root.dataset.locale || document.documentElement.lang || undefined;
    this.strings = JSON.parse(root.querySelector('[data-imaging-strings]')?.textContent || '{}');
    this.attached = new Set(JSON.parse(root.dataset.attached || '[]'));
    this.studies = [];
    this.seriesCache = new Map();
    this.prefetchTimer = 0;
    this.studiesLoaded = false;
    this.polling = null;
    const panel = root.querySelector('[data-rcp-viewer]');
    this.viewer = panel ? createViewer(panel) : null;
    this.bind();
  }

  q(selector) {
    return this.root.querySelector(selector);
  }

  bind() {
    this.q('[data-action="reload"]')?.addEventListener('click', () => this.reload());
    this.q('[data-imaging-error] [data-action="retry"]')?.addEventListener('click', () => this.reload());
    this.q('[data-action="prefetch"]')?.addEventListener('click', () => this.prefetch());
    this.q('[data-action="compare"]')?.addEventListener('click', () => this.compare());
    const form = this.q('[data-import-form]');
    const input = this.q('[data-import-files]');
    input?.addEventListener('change', () => {
      const names = Array.from(input.files || []).map((f) => f.name);
      this.q('[data-import-chosen]').textContent = names.length ? names.join(', ') : '';
    });
    form?.addEventListener('submit', (event) => {
      event.preventDefault();
      this.upload(Array.from(input?.files || []));
    });
    const confirmBox = this.q('[data-reconcile-confirm]');
    confirmBox?.addEventListener('change', () => {
      this.q('[data-action="reconcile"]').disabled = !confirmBox.checked;
    });
    this.q('[data-action="reconcile"]')?.addEventListener('click', () => this.reconcile());
    this.q('[data-action="reconcile-refuse"]')?.addEventListener('click', () => this.refuseReconcile());
  }

  // ---- errors -------------------------------------------------------------------------------------------

  showError(message, {retry = false} = {}) {
    const box = this.q('[data-imaging-error]');
    box.querySelector('[data-text]').textContent = message;
    box.querySelector('[data-action="retry"]').hidden = !retry;
    box.hidden = false;
  }

  clearError() {
    this.q('[data-imaging-error]').hidden = true;
  }

  // ---- the patient's studies ----------------------------------------------------------------------------

  /** Ask the archive for the patient's studies and show them; resolves once the table is drawn. */
  async reload() {
    const status = this.q('[data-studies-status]');
    status.textContent = this.strings.loading;
    this.root.dataset.studiesState = 'loading';
    try {
      const studies = await api('GET', `/api/cases/${this.caseId}/studies`);
      this.studies = Array.isArray(studies) ? studies : [];
      this.attached = new Set(this.studies.filter((s) => s.attached).map((s) => s.study_uid)
        .concat(Array.from(this.attached).filter((uid) => !this.studies.some((s) => s.study_uid === uid))));
      this.clearError();
      status.textContent = this.studies.length ? fill(this.strings.attached_count, {n: this.attachedInArchive()})
        : '';
      this.renderStudies();
      this.root.dataset.studiesState = 'ready';
    } catch (err) {
      this.root.dataset.studiesState = 'error';
      status.textContent = '';
      this.showError(describeError(err, this.strings), {retry: true});
    }
    this.studiesLoaded = true;
    this.updateReadiness();
  }

  attachedInArchive() {
    return this.studies.filter((s) => this.attached.has(s.study_uid)).length;
  }

  renderStudies() {
    const body = this.q('[data-studies-body]');
    body.replaceChildren();
    if (!this.studies.length) {
      body.append(el('tr', {class: 'ci-placeholder'}, el('td', {colspan: '7', class: 'muted', text: this.strings.none_found})));
      return;
    }
    for (const study of this.studies) body.append(this.studyRow(study));
  }

  studyRow(study) {
    const s = this.strings;
    const attached = this.attached.has(study.study_uid);
    let mark;
    if (this.manage) {
      const box = el('input', {type: 'checkbox', 'data-attach': study.study_uid, checked: attached,
        title: s.attach, 'aria-label': `${s.attach}: ${formatStudyDate(study.date, this.locale)} ${study.description || ''}`});
      box.addEventListener('change', () => this.attach(study.study_uid, box.checked, box));
      mark = el('label', {class: 'ci-attach'}, box);
    } else {
      mark = el('span', {class: attached ? 'ci-badge ok' : 'ci-badge', text: attached ? `✓ ${s.attached}` : s.not_attached});
    }
    const toggle = el('button', {type: 'button', class: 'btn small', 'data-series-toggle': study.study_uid,
      'aria-expanded': 'false', text: s.show_series});
    const row = el('tr', {'data-study-uid': study.study_uid, class: attached ? 'is-attached' : ''},
      el('td', {class: 'ci-col-attach'}, mark),
      el('td', {class: 'col-when', text: formatStudyDate(study.date, this.locale)}),
      el('td', {text: (study.modalities || []).join(', ')}),
      el('td', {text: study.description || '—'}),
      el('td', {class: 'num', text: String(study.series_count ?? '')}),
      el('td', {class: 'num', text: String(study.image_count ?? '')}),
      el('td', {class: 'ci-actions'}, toggle));
    const detail = el('tr', {class: 'ci-series-row', 'data-series-for': study.study_uid, hidden: true},
      el('td', {colspan: '7'}, el('div', {class: 'ci-series'})));
    toggle.addEventListener('click', () => this.toggleSeries(study.study_uid, toggle, detail));
    const frag = document.createDocumentFragment();
    frag.append(row, detail);
    return frag;
  }

  /** The series of a study (GET /api/imaging/studies/{study}/series), remembered for the page's life. */
  async seriesOf(studyUid) {
    if (!this.seriesCache.has(studyUid)) {
      const url = `/api/imaging/studies/${encodeURIComponent(studyUid)}/series?case_id=${this.caseId}`;
      const promise = api('GET', url);
      this.seriesCache.set(studyUid, promise);
      promise.catch(() => this.seriesCache.delete(studyUid));
    }
    return this.seriesCache.get(studyUid);
  }

  async toggleSeries(studyUid, button, detail) {
    const open = detail.hidden;
    detail.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    button.textContent = open ? this.strings.hide_series : this.strings.show_series;
    if (!open) return;
    const box = detail.querySelector('.ci-series');
    box.replaceChildren(el('span', {class: 'muted small', text: this.strings.loading}));
    try {
      const series = await this.seriesOf(studyUid);
      box.replaceChildren(this.seriesList(studyUid, series));
    } catch (err) {
      box.replaceChildren(el('span', {class: 'error', role: 'alert', text: describeError(err, this.strings)}));
    }
  }

  seriesList(studyUid, series) {
    const s = this.strings;
    if (!series.length) return el('p', {class: 'muted', text: s.no_series});
    const list = el('ul', {class: 'ci-series-list'});
    const ordered = [...series].sort((a, b) => (a.series_number ?? 0) - (b.series_number ?? 0));
    for (const item of ordered) {
      const label = `${s.series} ${item.series_number ?? ''} · ${item.modality || ''} · ${item.description || '—'}`
        + ` · ${item.instance_count ?? '?'} ${s.images}`;
      const open = el('button', {type: 'button', class: 'btn small primary', 'data-open-series': item.series_uid,
        text: s.open, title: `${s.open}: ${label}`});
      const left = el('button', {type: 'button', class: 'btn small', 'data-open-left': item.series_uid,
        text: s.open_left, title: `1×2 · ${s.open_left}`});
      const right = el('button', {type: 'button', class: 'btn small', 'data-open-right': item.series_uid,
        text: s.open_right, title: `1×2 · ${s.open_right}`});
      open.addEventListener('click', () => this.openSeries(studyUid, item.series_uid));
      left.addEventListener('click', () => this.openSeries(studyUid, item.series_uid, {viewport: 0, layout: '1x2'}));
      right.addEventListener('click', () => this.openSeries(studyUid, item.series_uid, {viewport: 1, layout: '1x2'}));
      list.append(el('li', {'data-series-uid': item.series_uid},
        el('span', {class: 'ci-series-label', text: label}), el('span', {class: 'ci-series-actions'}, open, left, right)));
    }
    return list;
  }

  // ---- attach / detach ----------------------------------------------------------------------------------

  /** Attach (or detach) a study; the checkbox, the readiness and the status line follow the server's answer. */
  async attach(studyUid, on, box = null) {
    const status = this.q('[data-studies-status]');
    status.textContent = this.strings.saving;
    if (box) box.disabled = true;
    try {
      const body = on ? {study_uids: [studyUid]} : {detach: [studyUid]};
      const out = await api('POST', `/api/cases/${this.caseId}/studies`, body);
      this.attached = new Set(out.study_uids || []);
      status.textContent = on ? this.strings.saved_attach : this.strings.saved_detach;
      this.clearError();
      const row = this.root.querySelector(`tr[data-study-uid="${CSS.escape(studyUid)}"]`);
      row?.classList.toggle('is-attached', this.attached.has(studyUid));
      if (box) box.checked = this.attached.has(studyUid);
      if (on) this.watchPrefetch();
    } catch (err) {
      if (box) box.checked = !on;
      status.textContent = '';
      this.showError(describeError(err, this.strings));
    } finally {
      if (box) box.disabled = false;
    }
    this.updateReadiness();
    return Array.from(this.attached);
  }

  /** "Missing images" in this panel and in the page's readiness checklist (case.html, second item). */
  updateReadiness() {
    const missing = this.attached.size === 0;
    this.q('[data-missing-images]').hidden = !missing;
    this.root.dataset.attachedCount = String(this.attached.size);
    const count = document.querySelector('#studies-title .count');
    if (count) count.textContent = String(this.attached.size);
    const items = document.querySelectorAll('.col-side ul.readiness > li');
    const item = items.length >= 3 ? items[1] : null;
    if (item) {
      item.classList.toggle('done', !missing);
      item.classList.toggle('todo', missing);
      const mark = item.querySelector('.mark');
      if (mark) mark.textContent = missing ? '✗' : '✓';
    }
  }

  // ---- prefetch -----------------------------------------------------------------------------------------

  async prefetch() {
    const button = this.q('[data-action="prefetch"]');
    const text = this.q('[data-prefetch-status]');
    if (!this.attached.size) {
      text.textContent = this.strings.prefetch_nothing;
      return null;
    }
    button.disabled = true;
    try {
      const progress = await api('POST', `/api/cases/${this.caseId}/prefetch`);
      this.showPrefetch(progress);
      return await this.pollPrefetch(progress);
    } catch (err) {
      text.textContent = describeError(err, this.strings);
      return null;
    } finally {
      button.disabled = false;
    }
  }

  /** Poll GET .../prefetch while the job runs (one poller at a time; later callers share its result). */
  pollPrefetch(progress) {
    if (this.polling) return this.polling;
    this.polling = (async () => {
      let current = progress;
      while (current && current.state === 'running') {
        await new Promise((resolve) => { this.prefetchTimer = setTimeout(resolve, PREFETCH_POLL_MS); });
        current = await api('GET', `/api/cases/${this.caseId}/prefetch`);
        this.showPrefetch(current);
      }
      return current;
    })().finally(() => { this.polling = null; });
    return this.polling;
  }

  /**
   * Show the prefetch the server may already be running (attaching or importing starts one; so may the
   * agenda's prefetch before the meeting), and follow it to the end. Quiet on failure: it is only a status.
   */
  async watchPrefetch() {
    try {
      const progress = await api('GET', `/api/cases/${this.caseId}/prefetch`);
      this.showPrefetch(progress);
      return await this.pollPrefetch(progress);
    } catch {
      return null;
    }
  }

  showPrefetch(p) {
    const s = this.strings;
    const bar = this.q('[data-prefetch-progress]');
    const text = this.q('[data-prefetch-status]');
    const errors = this.q('[data-prefetch-errors]');
    this.root.dataset.prefetchState = p.state;
    bar.hidden = p.state === 'idle';
    bar.value = Number(p.fraction || 0);
    const done = p.instances_done ?? 0;
    const total = p.instances_total ?? 0;
    if (p.state === 'running') text.textContent = fill(s.prefetch_running, {done, total});
    else if (p.state === 'done') text.textContent = fill(s.prefetch_done, {done, total});
    else if (p.state === 'idle') text.textContent = s.prefetch_idle;
    else text.textContent = s.prefetch_failed;
    const list = Array.isArray(p.errors) ? p.errors : [];
    errors.replaceChildren(...list.map((m) => el('li', {class: 'error', text: m})));
    errors.hidden = list.length === 0;
  }

  // ---- import -------------------------------------------------------------------------------------------

  /**
   * Send files (DICOM or zips) to POST /api/cases/{id}/imports with XMLHttpRequest, for its upload progress
   * events (fetch has none). Resolves with the per-file results, or null when the upload was refused.
   */
  upload(files, {confirm = ''} = {}) {
    const s = this.strings;
    this.lastFiles = files;
    this.offerReconcile(null);
    const error = this.q('[data-import-error]');
    const warning = this.q('[data-import-warning]');
    const row = this.q('[data-import-progress-row]');
    const bar = this.q('[data-import-progress]');
    const status = this.q('[data-import-status]');
    const button = this.q('[data-action="import"]');
    error.hidden = true;
    warning.hidden = true;
    if (!files.length) {
      error.textContent = s.upload_none;
      error.hidden = false;
      return Promise.resolve(null);
    }
    const form = new FormData();
    for (const file of files) form.append('files', file, file.name);
    row.hidden = false;
    bar.value = 0;
    status.textContent = fill(s.upload_progress, {percent: '0 %'});
    button.disabled = true;
    this.root.dataset.importState = 'sending';
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      // With a confirmation: the coordinator chose to reconcile the files of the identity shown (IHE IRWF).
      const query = confirm ? `?reconcile=true&confirm=${encodeURIComponent(confirm)}` : '';
      xhr.open('POST', `/api/cases/${this.caseId}/imports${query}`);
      xhr.setRequestHeader('X-CSRF-Token', csrfToken());
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.responseType = 'text';
      xhr.upload.addEventListener('progress', (e) => {
        if (!e.lengthComputable) return;
        const percent = Math.round((100 * e.loaded) / e.total);
        bar.value = percent;
        status.textContent = fill(s.upload_progress, {percent: `${percent} %`});
      });
      xhr.upload.addEventListener('load', () => {
        bar.value = 100;
        status.textContent = s.upload_checking;
      });
      const finish = (results) => {
        button.disabled = false;
        this.root.dataset.importState = results ? 'done' : 'refused';
        resolve(results);
      };
      xhr.addEventListener('load', () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText || 'null');
        } catch {
          body = null;
        }
        // 422 with the per-file list: the import was refused as a whole (nothing stored); the list says why.
        if ((xhr.status === 200 || xhr.status === 422) && Array.isArray(body)) {
          status.textContent = '';
          row.hidden = true;
          this.showResults(body);
          if (xhr.status === 422) {
            error.textContent = s.import_refused;
            error.hidden = false;
            error.dataset.status = '422';
            if (!confirm) this.offerReconcile(body);
          } else if (confirm) {
            const done = this.q('[data-reconcile-status]');
            done.textContent = s.reconcile_done;
            done.hidden = false;
          }
          this.reload();
          this.watchPrefetch();
          finish(body);
          return;
        }
        const err = new ApiError(xhr.status, body || {message: ''});
        let message = describeError(err, s);
        if (xhr.status === 413 && body && body.message) message = `${s.upload_too_large} (${body.message})`;
        else if (xhr.status === 400 && body && body.message) message = body.message;
        error.textContent = message;
        error.hidden = false;
        error.dataset.status = String(xhr.status);
        status.textContent = '';
        row.hidden = true;
        finish(null);
      });
      const failed = () => {
        // A server that cuts the connection while refusing a too-large body shows up here, not as a 413.
        error.textContent = s.network;
        error.hidden = false;
        error.dataset.status = '0';
        row.hidden = true;
        finish(null);
      };
      xhr.addEventListener('error', failed);
      xhr.addEventListener('abort', failed);
      xhr.send(form);
    });
  }

  /**
   * After a refused import: when the server offers to reconcile the files of one other identity domain (a
   * ``confirmation`` beside the identities shown), ask the coordinator to choose; ``null`` hides the choice.
   */
  offerReconcile(results) {
    const box = this.q('[data-reconcile]');
    const status = this.q('[data-reconcile-status]');
    if (!box) return;
    const offers = new Set((results || []).map((r) => r.identity && r.identity.confirmation).filter(Boolean));
    this.confirmation = offers.size === 1 ? [...offers][0] : '';
    box.hidden = !this.confirmation;
    this.q('[data-reconcile-confirm]').checked = false;
    this.q('[data-action="reconcile"]').disabled = true;
    status.hidden = offers.size < 2;
    status.textContent = offers.size > 1 ? this.strings.reconcile_several : '';
    if (this.confirmation) box.scrollIntoView({block: 'nearest'});
  }

  /** The coordinator's explicit choice: send the same files again, with the confirmation of what was shown. */
  reconcile() {
    if (!this.confirmation || !this.q('[data-reconcile-confirm]').checked) return Promise.resolve(null);
    return this.upload(this.lastFiles || [], {confirm: this.confirmation});
  }

  refuseReconcile() {
    this.offerReconcile(null);
    const status = this.q('[data-reconcile-status]');
    status.textContent = this.strings.reconcile_refused;
    status.hidden = false;
  }

  showResults(results) {
    const s = this.strings;
    const table = this.q('[data-import-results]');
    const body = table.querySelector('tbody');
    body.replaceChildren();
    let ok = 0;
    let refused = 0;
    let warnings = 0;
    for (const r of results) {
      const kind = !r.ok ? 'refused' : r.warning ? 'warning' : r.reconciled ? 'reconciled' : 'ok';
      if (r.ok) ok += 1; else refused += 1;
      if (r.warning) warnings += 1;
      const message = [r.message, r.warning].filter(Boolean).join(' ');
      const cell = el('td', {text: message});
      if (r.identity) cell.append(this.identityTable(r.identity));
      body.append(el('tr', {class: `ci-result ci-result--${kind}`, 'data-result': kind, 'data-file': r.name},
        el('td', {class: 'mono small', text: r.name}),
        el('td', {}, el('span', {class: `ci-badge ${kind}`, text: s[kind]})),
        cell));
    }
    table.hidden = false;
    const warning = this.q('[data-import-warning]');
    if (warnings) {
      warning.textContent = `⚠ ${s.patient_mismatch} ${fill(s.upload_done, {ok, refused, warnings})}`;
      warning.hidden = false;
    }
    const status = this.q('[data-studies-status]');
    status.textContent = fill(s.upload_done, {ok, refused, warnings});
  }

  /** A refused file's patient beside the case's patient (shown to the uploader only), differing fields marked. */
  identityTable(identity) {
    const s = this.strings;
    const keys = ['family_name', 'given_names', 'birth_date', 'sex', 'patient_id', 'issuer'];
    const differs = new Set(identity.fields.map((f) => (f === 'given_name' ? 'given_names' : f)));
    if (differs.has('identifier')) { differs.add('patient_id'); differs.add('issuer'); }
    // A grid of divs, not a nested table: the results table's rows stay one per file.
    const head = el('div', {class: 'ci-identity-row'}, el('span', {text: ''}),
      el('strong', {text: s.identity_file}), el('strong', {text: s.identity_case}));
    const rows = keys.map((k) => el('div', {class: `ci-identity-row${differs.has(k) ? ' ci-identity-differs' : ''}`,
      'data-field': k},
      el('span', {class: 'mono small', text: k}),
      el('span', {text: identity.file[k] || '—'}),
      el('span', {text: identity.case[k] || '—'})));
    return el('div', {class: 'ci-identity small', 'data-identity': ''}, head, ...rows);
  }

  // ---- the viewer ---------------------------------------------------------------------------------------

  /** Open a series in the viewer (viewport: the active one unless given; layout: switch first, e.g. 1x2). */
  async openSeries(studyUid, seriesUid, {viewport = null, layout = null} = {}) {
    if (!this.viewer) return null;
    if (layout && this.viewer.getState().layout !== layout) this.viewer.setLayout(layout);
    const i = viewport ?? this.viewer.getState().active ?? 0;
    const url = `${seriesMetaUrl(studyUid, seriesUid)}?case_id=${this.caseId}`;
    this.root.querySelector('.ci-viewer-wrap')?.scrollIntoView({block: 'nearest'});
    // The keys (arrows, presets 1-5) go to the viewer once a series is opened from the list.
    this.viewer.element.focus({preventScroll: true});
    this.viewer.setActive(i);
    return this.viewer.loadSeries(i, url);
  }

  /** Prior (left) and current (right): the image series with the most images of the two latest attached studies. */
  async compare() {
    const s = this.strings;
    const attached = this.studies.filter((st) => this.attached.has(st.study_uid))
      .sort((a, b) => `${a.date}${a.time}`.localeCompare(`${b.date}${b.time}`));
    if (attached.length < 2) {
      this.q('[data-studies-status]').textContent = s.compare_needs_two;
      return false;
    }
    const pair = attached.slice(-2);
    try {
      const picks = await Promise.all(pair.map(async (st) => {
        const series = await this.seriesOf(st.study_uid);
        const best = [...series].sort((a, b) => (b.instance_count ?? 0) - (a.instance_count ?? 0))[0];
        return best ? [st.study_uid, best.series_uid] : null;
      }));
      if (picks.some((p) => !p)) {
        this.q('[data-studies-status]').textContent = s.no_series;
        return false;
      }
      this.viewer.setLayout('1x2');
      await Promise.all(picks.map(([st, se], i) => this.openSeries(st, se, {viewport: i})));
      return true;
    } catch (err) {
      this.showError(describeError(err, s));
      return false;
    }
  }
}

const root = document.querySelector('[data-case-imaging]');
if (root) {
  const panel = new CaseImaging(root);
  window.caseImaging = panel;
  window.caseViewer = panel.viewer;
  window.caseImagingReady = panel.reload();
  panel.watchPrefetch();
}
