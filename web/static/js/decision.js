// The decision form of the room: the current case's fiche RCP, written by the people in the meeting.
//
// Every field is saved on its own (PUT /api/cases/{id}/decision/fields/{name}) with the version it was edited
// from. If someone else saved the same field meanwhile the server answers 409 with their text, and the form shows
// both texts side by side so nobody's words are lost silently. Edits by others arrive live: room.js dispatches
// `rcp:decision-field` on document with {case_id, name, value, version, editor_id} (the room broadcasts what
// rcp.minutes.store.on_field_saved reports). Signing asks for the password again and the draft revision read.
//
// Usage (room page):  import { mountDecision } from '/static/js/decision.js';
//                     const form = mountDecision(document.querySelector('[data-decision]'), { caseId: 12 });
//                     form.setCase(13);   // when the presenter moves to another case
//
// Labels come from the page strings (server-side gettext: web/templates/room_strings.html).

import { api, ApiError, format, pageStrings, toast, withBusy } from './api.js';

// Every text comes from the page's one table of strings (<script id="page-strings">, rendered by the server with
// gettext: web/templates/room_strings.html): no English fallback, so a French page shows no English word.
const S = pageStrings().decision;
// The proposal types with their labels, in the fiche's order (rcp.minutes.render.PROPOSAL_LABELS).
const PROPOSALS = S.proposals;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

/**
 * What a failed call says to the person, in the page's language: the table's words for the refusals a signer
 * meets (quorum, treatment specialty, who signs, stale or signed draft, identity), else the server's own message;
 * a network failure says nothing was sent (the browser's own "Failed to fetch" is English).
 */
function refusal(error) {
  if (!(error instanceof ApiError)) return S.unreachable;
  return S.refusals[error.code] || error.message;
}

/** A stored TNM as the oncologist wrote it: "ypT0 N0 M0" (rcp.minutes.staging.Tnm.label). */
function tnmLabel(v) {
  if (!v || !v.t) return '';
  return [`${v.prefix || ''}${v.t}`, v.n ? `${v.n_prefix || ''}${v.n}` : '', v.m ? `${v.m_prefix || ''}${v.m}` : '']
    .filter(Boolean).join(' ');
}

/** One editable field: its DOM, its server version, whether the local text differs from what was saved. */
class FieldBinding {
  constructor(form, name, read, write, box) {
    Object.assign(this, { form, name, read, write, box, version: 0, dirty: false, timer: 0, saving: null });
    this.status = el('span', { class: 'field-status', 'aria-live': 'polite' });
    this.conflictBox = el('div', { class: 'field-conflict', hidden: true });
    box.append(this.status, this.conflictBox);
  }

  load(field) {
    this.version = field.version;
    if (!this.dirty) this.write(field.value);
  }

  changed(immediate = false) {
    this.dirty = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.save(), immediate ? 0 : 800);
  }

  async save(base = this.version) {
    clearTimeout(this.timer);
    if (!this.dirty || this.saving) return;
    const value = this.read();
    // The server refused this very value (422): sending it again on blur would only flicker its message away and
    // shift the form under the pointer (the click that blurred it would land elsewhere).
    if (this.refused === JSON.stringify(value)) return;
    this.status.textContent = S.saving;
    this.saving = api('PUT', `/api/cases/${this.form.caseId}/decision/fields/${encodeURIComponent(this.name)}`,
      { value, base_version: base });
    try {
      const saved = await this.saving;
      this.version = saved.version;
      this.form.revision = saved.revision;
      this.dirty = JSON.stringify(this.read()) !== JSON.stringify(value);  // typed more while saving?
      this.status.textContent = S.saved;
      this.box.classList.remove('has-error');
      this.conflictBox.hidden = true;
      if (this.dirty) this.changed();
    } catch (error) {
      this.status.textContent = '';
      if (error instanceof ApiError && error.code === 'field_conflict') this.showConflict(value, error);
      else if (error instanceof ApiError && error.status === 422) {
        this.refused = JSON.stringify(value);
        this.box.classList.add('has-error');
        this.status.textContent = Object.values(error.fields).join(' ');
      } else toast(refusal(error), 'error');
    } finally {
      this.saving = null;
    }
  }

  showConflict(mine, error) {
    // The 409 body carries the stored field: ApiError keeps only message/fields, so fetch the current state.
    api('GET', `/api/cases/${this.form.caseId}/decision`).then((state) => {
      const current = state.draft.fields[this.name];
      const show = (v) => (typeof v === 'string' ? v : JSON.stringify(v, null, 1));
      this.conflictBox.replaceChildren(
        el('p', { class: 'warning' }, S.conflict),
        el('div', { class: 'conflict-texts' },
          el('figure', {}, el('figcaption', {}, S.theirs), el('pre', {}, show(current.value))),
          el('figure', {}, el('figcaption', {}, S.mine), el('pre', {}, show(mine)))),
        el('button', { type: 'button', onclick: () => { this.dirty = false; this.load(current); this.conflictBox.hidden = true; } }, S.keep_theirs),
        el('button', { type: 'button', onclick: () => { this.write(mine); this.dirty = true; this.save(current.version); } }, S.use_mine),
      );
      this.conflictBox.hidden = false;
    }, () => toast(refusal(error), 'error'));
  }

  remote(detail) {
    if (detail.version <= this.version) return;
    if (this.dirty) {
      this.status.textContent = S.changed_by_other;  // our next save will meet the conflict and show both texts
      return;
    }
    this.load({ value: detail.value, version: detail.version });
    this.box.classList.add('remote-update');
    setTimeout(() => this.box.classList.remove('remote-update'), 1200);
  }
}

class DecisionForm {
  constructor(root, { caseId }) {
    this.root = root;
    this.caseId = caseId;
    this.revision = 0;
    this.fields = new Map();
    this.onRemote = (event) => {
      const d = event.detail || {};
      if (d.case_id === this.caseId) this.fields.get(d.name)?.remote(d);
    };
    document.addEventListener('rcp:decision-field', this.onRemote);
    this.build();
    this.reload();
  }

  /** Read the decision again; a failed read (the network just came back) is said, not left uncaught. */
  reload() {
    this.refresh().catch((error) => toast(refusal(error), 'error'));
  }

  destroy() {
    document.removeEventListener('rcp:decision-field', this.onRemote);
    this.root.replaceChildren();
  }

  setCase(caseId) {
    if (caseId === this.caseId) return;
    for (const f of this.fields.values()) f.save();
    this.caseId = caseId;
    for (const f of this.fields.values()) { f.dirty = false; f.version = 0; }
    this.reload();
  }

  bind(name, label, control, read, write, events = ['input']) {
    const box = el('div', { class: 'field', dataset: { field: name } }, el('label', {}, label, control));
    const binding = this.attach(name, read, write, box);
    for (const type of events) control.addEventListener(type, () => binding.changed(type === 'change'));
    control.addEventListener('blur', () => binding.save());
    return box;
  }

  /** The binding of one draft field whose inputs the caller builds (the box gets its status line at the end). */
  attach(name, read, write, box) {
    const binding = new FieldBinding(this, name, read, write, box);
    this.fields.set(name, binding);
    return binding;
  }

  /**
   * A professional as the fiche keeps them (rcp.minutes.fiche.Physician): name ("Dr Amélie ROUSSEAU"), RPPS
   * (optional), MSSanté address (the server refuses any other: their copy of the signed fiche goes there,
   * rcp.minutes.copies). What the form does not show (specialty, hospital) is kept as it was stored; all three
   * inputs empty is no one (null), never a placeholder value.
   */
  physician(name, onChange) {
    let kept = {};
    const input = (part, attrs) => el('input', { type: 'text', spellcheck: 'false', dataset: { part }, ...attrs });
    const who = input('name', { maxlength: '200' });
    const rpps = input('rpps', { maxlength: '11', size: '11', inputmode: 'numeric' });
    const email = input('email', { type: 'email', maxlength: '200' });
    const inputs = [who, rpps, email];
    for (const i of inputs) {
      i.addEventListener('input', onChange);
      i.addEventListener('blur', () => this.fields.get(name).save());
    }
    const read = () => (inputs.some((i) => i.value.trim())
      ? { ...kept, name: who.value.trim(), rpps: rpps.value.trim(), email: email.value.trim() } : null);
    const write = (v) => {
      kept = v || {};
      who.value = v?.name || ''; rpps.value = v?.rpps || ''; email.value = v?.email || '';
    };
    const row = el('div', { class: 'physician-row' }, el('label', {}, S.physician_name, who),
      el('label', {}, S.rpps, rpps), el('label', {}, S.mssante_address, email));
    return { row, read, write, blank: () => !inputs.some((i) => i.value.trim()) };
  }

  /** The patient's GP (médecin traitant) and the correspondents: who gets the signed fiche by secure mail. */
  people() {
    const gp = this.physician('gp', () => this.fields.get('gp').changed());
    const gpBox = el('div', { class: 'field', dataset: { field: 'gp' } }, el('p', { class: 'field-label' }, S.gp), gp.row);
    this.attach('gp', gp.read, gp.write, gpBox);

    const rows = el('div', { class: 'physician-rows' });
    let people = [];
    const changed = (immediate = false) => this.fields.get('correspondents').changed(immediate);
    const addRow = (value = null) => {
      const person = this.physician('correspondents', () => changed());
      person.write(value);
      const remove = el('button', { type: 'button' }, S.remove);
      person.row.append(remove);
      remove.addEventListener('click', () => {
        person.row.remove();
        people = people.filter((p) => p !== person);
        changed(true);
      });
      people.push(person);
      rows.append(person.row);
      return person;
    };
    const add = el('button', { type: 'button', dataset: { addCorrespondent: '' } }, S.add_correspondent);
    add.addEventListener('click', () => addRow().row.querySelector('input').focus());
    const box = el('div', { class: 'field', dataset: { field: 'correspondents' } },
      el('p', { class: 'field-label' }, S.correspondents), rows, add);
    this.attach('correspondents', () => people.map((p) => p.read()).filter(Boolean), (v) => {
      // A row just added and not filled yet is not saved: a refresh of the form keeps it.
      const blank = people.filter((p) => p.blank());
      rows.replaceChildren();
      people = [];
      for (const item of v || []) addRow(item);
      for (const p of blank) { people.push(p); rows.append(p.row); }
    }, box);
    return el('fieldset', { class: 'group people' }, el('legend', {}, S.gp_and_correspondents), gpBox, box);
  }

  text(name, label, rows = 3) {
    const area = el('textarea', { rows: String(rows), name });
    return this.bind(name, label, area, () => area.value, (v) => { area.value = v ?? ''; });
  }

  /** A TNM classification typed as written ("ypT0N0M0"), its edition (7/8, flagged while missing), its stage. */
  tnm(name, label) {
    const text = el('input', { type: 'text', maxlength: '200', placeholder: S.tnm_hint, spellcheck: 'false' });
    const edition = el('select', {}, el('option', { value: '' }, ''),
      el('option', { value: '7' }, '7'), el('option', { value: '8' }, '8'));
    const stage = el('input', { type: 'text', maxlength: '12', size: '6' });
    const flag = el('span', { class: 'warning', dataset: { editionToConfirm: '' }, hidden: true }, S.edition_to_confirm);
    const showFlag = () => { flag.hidden = !text.value.trim() || edition.value !== ''; };
    const box = this.bind(name, label, text,
      () => (text.value.trim() ? { text: text.value, edition: edition.value, stage: stage.value } : null),
      (v) => { text.value = v ? (v.text ?? tnmLabel(v)) : ''; edition.value = v?.edition || ''; stage.value = v?.stage || ''; showFlag(); });
    edition.addEventListener('change', () => { showFlag(); this.fields.get(name).changed(true); });
    stage.addEventListener('input', () => this.fields.get(name).changed());
    text.addEventListener('input', showFlag);
    box.append(el('label', {}, S.edition, edition), el('label', {}, S.stage, stage), flag);
    return box;
  }

  /** FIGO, Ann Arbor, ISS ...: rows of (system, value), each checked by the server against its system's table. */
  classifications() {
    const rows = el('div', { class: 'classification-rows' });
    const add = el('button', { type: 'button', dataset: { addClassification: '' } }, S.add_classification);
    const read = () => [...rows.children].map((row) => ({ system: row.querySelector('select').value,
      value: row.querySelector('input').value })).filter((c) => c.value.trim());
    const addRow = (item = {}) => {
      const system = el('select', { 'aria-label': S.classification }, el('option', { value: '' }, ''),
        ...(this.stagingChoices?.classifications || []).map((c) => el('option', { value: c.key }, c.name)));
      if (item.system) system.value = item.system;
      const value = el('input', { type: 'text', maxlength: '20', size: '8', 'aria-label': S.value, value: item.value || '' });
      const remove = el('button', { type: 'button' }, S.remove);
      const row = el('div', { class: 'classification-row' }, system, value, remove);
      const hint = () => { value.placeholder = (this.stagingChoices?.classifications || []).find((c) => c.key === system.value)?.examples || ''; };
      hint();
      system.addEventListener('change', () => { hint(); this.fields.get('other_classifications').changed(true); });
      value.addEventListener('input', () => this.fields.get('other_classifications').changed());
      remove.addEventListener('click', () => { row.remove(); this.fields.get('other_classifications').changed(true); });
      rows.append(row);
      return value;
    };
    const box = this.bind('other_classifications', S.other_classifications, add, read,
      (v) => {
        // A row just added and not filled yet is not saved: a refresh of the form keeps it.
        const blank = [...rows.children].filter((row) => !row.querySelector('input').value.trim());
        rows.replaceChildren();
        for (const item of v || []) addRow(item);
        rows.append(...blank);
      }, []);
    add.addEventListener('click', () => addRow().focus());
    box.append(rows);
    return box;
  }

  staging() {
    const date = el('input', { type: 'text', maxlength: '10', size: '10', placeholder: S.diagnosis_date_hint, inputmode: 'numeric' });
    this.laterality = el('select', {});
    return el('fieldset', { class: 'group staging' },
      this.bind('diagnosis_date', S.diagnosis_date, date, () => date.value.trim() || null, (v) => { date.value = v || ''; }),
      this.bind('laterality', S.laterality, this.laterality, () => this.laterality.value || null,
        (v) => { this.laterality.dataset.value = v || ''; this.laterality.value = v || ''; }, ['change']),
      this.tnm('clinical_tnm', S.clinical_tnm),
      this.tnm('pathological_tnm', S.pathological_tnm),
      this.classifications());
  }

  build() {
    const proposalType = el('select', {}, el('option', { value: '' }, ''), ...PROPOSALS.map((p) => el('option', { value: p.key }, p.label)));
    const proposalDetails = el('textarea', { rows: '4' });
    const proposalBox = el('div', { class: 'group' });
    const proposal = this.bind('proposal', S.proposal, proposalType,
      () => (proposalType.value || proposalDetails.value.trim() || this.treatments?.length
        ? { type: proposalType.value, details: proposalDetails.value, treatments: this.treatments || [] } : null),
      (v) => { proposalType.value = v?.type || ''; proposalDetails.value = v?.details || ''; this.treatments = v?.treatments || []; },
      ['change']);
    proposalDetails.addEventListener('input', () => this.fields.get('proposal').changed());
    proposalBox.append(proposal, el('label', {}, S.details, proposalDetails));

    const conforms = el('select', {}, el('option', { value: '' }, ''), el('option', { value: 'yes' }, S.yes),
      el('option', { value: 'no' }, S.no));
    const reference = el('input', { type: 'text' });
    const reason = el('textarea', { rows: '2' });
    const guideline = this.bind('guideline', S.guideline, conforms,
      () => ({ conforms: conforms.value === '' ? null : conforms.value === 'yes', reference: reference.value, reason: reason.value }),
      (v) => { conforms.value = v?.conforms == null ? '' : v.conforms ? 'yes' : 'no'; reference.value = v?.reference || ''; reason.value = v?.reason || ''; },
      ['change']);
    for (const input of [reference, reason]) input.addEventListener('input', () => this.fields.get('guideline').changed());
    guideline.append(el('label', {}, S.reference, reference), el('label', {}, S.why_not, reason));

    const trialBox = el('input', { type: 'checkbox' });
    const trialName = el('input', { type: 'text' });
    const trial = this.bind('clinical_trial', S.trial, trialBox,
      () => ({ proposed: trialBox.checked, trial: trialName.value }),
      (v) => { trialBox.checked = Boolean(v?.proposed); trialName.value = v?.trial || ''; }, ['change']);
    trialName.addEventListener('input', () => this.fields.get('clinical_trial').changed());
    trial.append(el('label', {}, S.trial_name, trialName));

    const status = el('select', {}, el('option', { value: '' }, ''), el('option', { value: 'discussed' }, S.discussed),
      el('option', { value: 'registered' }, S.registered));
    this.responsible = el('select', {});
    const informed = el('input', { type: 'checkbox' });
    // DMP INVISIBLE_PATIENT: the fiche reaches the record and the GP, not the patient, before the announcement.
    const hidden = el('input', { type: 'checkbox' });

    this.summary = el('div', { class: 'decision-summary', 'aria-live': 'polite' });
    const signButton = el('button', { type: 'button', class: 'primary' }, S.sign);
    signButton.addEventListener('click', () => withBusy(signButton, () => this.sign()));

    this.root.replaceChildren(
      this.text('question', S.question, 2),
      this.text('clinical_summary', S.clinical_summary, 5),
      this.staging(),
      proposalBox, guideline, trial,
      this.bind('case_status', S.case_status, status, () => status.value || null, (v) => { status.value = v || ''; }, ['change']),
      this.bind('responsible_physician', S.responsible, this.responsible,
        () => this.attendees?.find((a) => String(a.user_id) === this.responsible.value) &&
          (({ name, specialty, user_id }) => ({ name, specialty, user_id }))(this.attendees.find((a) => String(a.user_id) === this.responsible.value)),
        (v) => { this.responsible.value = v?.user_id != null ? String(v.user_id) : ''; }, ['change']),
      this.bind('patient_informed', S.informed, informed, () => informed.checked, (v) => { informed.checked = v === true; }, ['change']),
      this.bind('hidden_from_patient', S.hidden_from_patient, hidden, () => hidden.checked, (v) => { hidden.checked = v === true; }, ['change']),
      this.people(),
      this.text('comments', S.comments, 2),
      this.summary, signButton,
    );
  }

  async refresh() {
    const state = await api('GET', `/api/cases/${this.caseId}/decision`);
    this.revision = state.draft.revision;
    this.attendees = state.attendees || [];
    this.responsible.replaceChildren(el('option', { value: '' }, ''),
      ...this.attendees.map((a) => el('option', { value: String(a.user_id) }, a.name)));
    this.stagingChoices = state.staging_choices || this.stagingChoices;
    const side = this.laterality.dataset.value || this.laterality.value;
    this.laterality.replaceChildren(el('option', { value: '' }, ''),
      ...(this.stagingChoices?.lateralities || []).map((l) => el('option', { value: l.key }, l.label)));
    this.laterality.value = side;
    for (const [name, field] of Object.entries(state.draft.fields)) this.fields.get(name)?.load(field);
    this.showSummary(state);
  }

  showSummary(state) {
    // The quorum is stated once, above the form, by the room (room.js, in the meeting page's words).
    const parts = [];
    // A treatment whose specialty nobody in the quorum covers: flagged before signing (the server refuses it).
    this.gaps = (state.treatment_gaps || []).map((g) => format(S.treatment_gap,
      { treatment: g.display, specialty: g.needs_labels.map((l) => l.toLowerCase()).join(S.or) }));
    for (const gap of this.gaps) parts.push(el('p', { class: 'warning', 'data-treatment-gap': '' }, gap));
    const missing = Object.values(state.missing || {});
    if (missing.length) parts.push(el('p', {}, S.missing), el('ul', {}, ...missing.map((m) => el('li', {}, m))));
    const last = state.versions[state.versions.length - 1];
    if (last) parts.push(el('p', { class: 'ok' }, format(S.signed, { number: last.number })));
    this.summary.replaceChildren(...parts);
  }

  async sign() {
    await Promise.all([...this.fields.values()].map((f) => f.save()));
    // Within the session's five-minute signing window the server asks for nothing; otherwise it answers
    // 'reauthentication_required' and the signer gives the password and the authenticator's code (rcp.auth.reauth).
    const url = `/api/cases/${this.caseId}/decision/sign`;
    // The proposal's treatment gaps first: the server refuses such a fiche, and says why.
    if (this.gaps && this.gaps.length && !window.confirm(this.gaps.join('\n\n'))) return;
    try {
      try {
        await api('POST', url, { seen_revision: this.revision });
      } catch (error) {
        if (!(error instanceof ApiError) || error.code !== 'reauthentication_required') throw error;
        // A session opened by an identity provider proves itself there: a fresh login (prompt=login, max_age=0)
        // that opens the same five-minute window, then back to this page (rcp.auth.sso's confirm).
        const confirmUrl = this.root.dataset.confirmUrl;
        if (confirmUrl) {
          if (!window.confirm(S.confirm_at_provider)) return;
          window.location.assign(`${confirmUrl}?next=${encodeURIComponent(window.location.pathname)}`);
          return;
        }
        const password = window.prompt(S.password);
        if (!password) return;
        const code = window.prompt(S.code);
        if (!code) return;
        await api('POST', url, { password, code, seen_revision: this.revision });
      }
    } catch (error) {
      toast(refusal(error), 'error', 8000);
    }
    await this.refresh();
  }
}

export function mountDecision(root, options) {
  return new DecisionForm(root, options);
}
