// The meeting page: reorder the agenda by drag and drop (or the arrow buttons) through
// PUT /api/meetings/{id}/agenda, search registered patients (POST /api/patients/search), look for patients
// already registered with the identity being typed (POST /api/patients/duplicates; both POST: patient data never
// goes in an address), and list the people of a specialty to
// invite (GET /api/users?specialty=). Without this script every action still works as a form post.

import { api, ApiError, format, pageStrings, toast, withBusy } from './api.js';

const strings = pageStrings();

function messageOf(error) {
  if (error instanceof ApiError) return error.message;
  return strings.network || String(error);
}

// --- agenda ------------------------------------------------------------------------------------------------

function setupAgenda(table) {
  const body = table.tBodies[0];
  const meetingId = table.dataset.meetingId;
  let dragged = null;
  let before = [];
  let saving = Promise.resolve();

  const rows = () => Array.from(body.rows);
  const order = () => rows().map((row) => Number(row.dataset.caseId));

  function renumber() {
    const all = rows();
    all.forEach((row, index) => {
      const pos = row.querySelector('[data-pos]');
      if (pos) pos.textContent = String(index + 1);
      const up = row.querySelector('button[value="up"]');
      const down = row.querySelector('button[value="down"]');
      if (up) up.disabled = index === 0;
      if (down) down.disabled = index === all.length - 1;
    });
  }

  function restore(ids) {
    const byId = new Map(rows().map((row) => [Number(row.dataset.caseId), row]));
    for (const id of ids) if (byId.has(id)) body.appendChild(byId.get(id));
    renumber();
  }

  // Saves run one after another so that two quick moves reach the server in the order they were made.
  function save(previous) {
    const wanted = order();
    saving = saving.then(async () => {
      table.setAttribute('aria-busy', 'true');
      toast(strings.saving || '…', 'info', 0);
      try {
        await api('PUT', `/api/meetings/${meetingId}/agenda`, { case_ids: wanted });
        toast(strings.saved || 'OK');
      } catch (error) {
        restore(previous);
        toast(format(strings.failed, { reason: messageOf(error) }), 'error', 8000);
      } finally {
        table.removeAttribute('aria-busy');
      }
    });
    return saving;
  }

  function clearMarks() {
    body.querySelectorAll('.drop-before, .drop-after').forEach((row) => row.classList.remove('drop-before', 'drop-after'));
  }

  // Rows become draggable only while the handle is held, so that their text stays selectable.
  body.addEventListener('pointerdown', (event) => {
    const handle = event.target.closest && event.target.closest('.handle');
    if (handle) handle.closest('tr[data-case-id]').draggable = true;
  });
  const undraggable = () => rows().forEach((row) => { row.draggable = false; });
  document.addEventListener('pointerup', undraggable);

  body.addEventListener('dragstart', (event) => {
    const row = event.target.closest && event.target.closest('tr[data-case-id]');
    if (!row) return;
    dragged = row;
    before = order();
    row.classList.add('dragging');
    event.dataTransfer.effectAllowed = 'move';
    event.dataTransfer.setData('text/plain', row.dataset.caseId);
  });

  body.addEventListener('dragover', (event) => {
    if (!dragged) return;
    const row = event.target.closest && event.target.closest('tr[data-case-id]');
    event.preventDefault();
    event.dataTransfer.dropEffect = 'move';
    clearMarks();
    if (!row || row === dragged) return;
    const box = row.getBoundingClientRect();
    row.classList.add(event.clientY < box.top + box.height / 2 ? 'drop-before' : 'drop-after');
  });

  body.addEventListener('dragleave', (event) => {
    if (event.target === body) clearMarks();
  });

  body.addEventListener('drop', (event) => {
    if (!dragged) return;
    event.preventDefault();
    const row = event.target.closest && event.target.closest('tr[data-case-id]');
    if (row && row !== dragged) {
      const box = row.getBoundingClientRect();
      if (event.clientY < box.top + box.height / 2) row.before(dragged); else row.after(dragged);
    }
    clearMarks();
  });

  body.addEventListener('dragend', () => {
    undraggable();
    if (!dragged) return;
    dragged.classList.remove('dragging');
    clearMarks();
    dragged = null;
    renumber();
    if (order().join(',') !== before.join(',')) save(before);
  });

  // The arrow buttons: move the row at once, then save the whole order (their form is the no-script path).
  body.addEventListener('submit', (event) => {
    const form = event.target;
    if (!form.matches('form[data-move]')) return;
    event.preventDefault();
    const button = event.submitter;
    const row = form.closest('tr[data-case-id]');
    if (!button || !row) return;
    const previous = order();
    if (button.value === 'up' && row.previousElementSibling) row.previousElementSibling.before(row);
    else if (button.value === 'down' && row.nextElementSibling) row.nextElementSibling.after(row);
    else return;
    renumber();
    const focusValue = button.value;
    withBusy(button, () => save(previous)).then(() => {
      const again = row.querySelector(`button[value="${focusValue}"]`);
      (again && !again.disabled ? again : row.querySelector('button:not(:disabled)'))?.focus();
    });
  });
}

// --- patient search ----------------------------------------------------------------------------------------

function patientChoice(patient) {
  const label = document.createElement('label');
  label.className = 'choice result';
  const radio = document.createElement('input');
  radio.type = 'radio';
  radio.name = 'patient_id';
  radio.value = String(patient.id);
  radio.setAttribute('form', 'add-case-form');
  const text = document.createElement('span');
  const name = document.createElement('strong');
  name.textContent = patient.family_name.toUpperCase();
  text.append(name, ` ${patient.given_names || ''}`);
  const meta = document.createElement('span');
  meta.className = 'meta';
  const parts = [];
  if (patient.birth_date) parts.push(`${strings.born || ''} ${new Date(`${patient.birth_date}T00:00`).toLocaleDateString(document.documentElement.lang || undefined)}`);
  for (const ident of patient.identifiers || []) parts.push(`${ident.system} ${ident.value}`);
  meta.textContent = ` ${parts.join(' · ')}`;
  text.append(meta);
  label.append(radio, text);
  return label;
}

function setupPatientSearch(searchForm) {
  const results = document.querySelector('[data-patient-results]');
  const addForm = document.querySelector('form[data-add-case]');
  if (!results || !addForm) return;
  addForm.id = addForm.id || 'add-case-form';
  const button = document.querySelector('[data-search-button]');
  searchForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const q = (document.getElementById('s-q')?.value || '').trim();
    const identifier = (document.getElementById('s-identifier')?.value || '').trim();
    const assigner = (document.getElementById('s-assigner')?.value || '').trim();
    if (!q && !identifier) return;
    const body = { q, identifier };
    // An IPP with its hospital finds a patient registered elsewhere (audited); alone, it searches one's meetings.
    if (identifier && assigner) body.assigner = assigner;
    results.replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: strings.searching || '…' }));
    try {
      const found = await withBusy(button, () => api('POST', '/api/patients/search', body));
      results.replaceChildren(...found.map(patientChoice));
      if (!found.length) {
        results.replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: strings.no_patient }));
      } else if (found.length === 1) {
        results.querySelector('input').checked = true;
      }
    } catch (error) {
      results.replaceChildren(Object.assign(document.createElement('p'), { className: 'error', textContent: messageOf(error) }));
    }
  });
  // Enter in a search box searches, rather than submitting the case.
  for (const input of document.querySelectorAll('#s-q, #s-identifier, #s-assigner')) {
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') { event.preventDefault(); searchForm.requestSubmit(); }
    });
  }
}

// --- search before creating (RNIV) -------------------------------------------------------------------------

/** One registered look-alike, as web/templates/scheduling/_duplicate.html draws it (text only, no markup). */
function duplicateItem(patient) {
  const item = document.createElement('li');
  item.className = 'duplicate';
  item.dataset.duplicate = String(patient.id);
  const text = document.createElement('span');
  const name = document.createElement('strong');
  name.className = 'family';
  name.textContent = patient.family_name.toUpperCase();
  text.append(name);
  if (patient.used_name && patient.used_name !== patient.family_name) {
    text.append(` (${strings.used_name || ''} ${patient.used_name.toUpperCase()})`);
  }
  text.append(` ${patient.given_names || ''}`);
  const meta = document.createElement('span');
  meta.className = 'meta';
  const parts = [];
  if (patient.birth_date) parts.push(`${strings.born || ''} ${new Date(`${patient.birth_date}T00:00`).toLocaleDateString(document.documentElement.lang || undefined)}`);
  if (strings[`sex_${patient.sex}`]) parts.push(strings[`sex_${patient.sex}`]);
  for (const ident of patient.identifiers || []) {
    const kind = ident.system.startsWith('INS') ? 'INS' : ident.system;
    parts.push(`${kind} ${ident.value}${ident.assigner ? ` (${ident.assigner})` : ''}`);
  }
  meta.textContent = parts.join(' · ');
  text.append(meta);
  const badge = (cls, label, data) => {
    const node = document.createElement('span');
    node.className = `badge ${cls}`;
    node.textContent = label;
    Object.assign(node.dataset, data);
    return node;
  };
  text.append(badge(`badge-identity badge-identity-${patient.identity_status}`,
    strings[`identity_${patient.identity_status}`] || patient.identity_status, { identityStatus: patient.identity_status }));
  for (const attribute of patient.identity_attributes || []) {
    text.append(' ', badge('badge-identity-attribute', strings[`identity_${attribute}`] || attribute, { identityAttribute: attribute }));
  }
  const button = document.createElement('button');
  button.type = 'submit';
  button.className = 'btn';
  button.name = 'use_patient';
  button.value = String(patient.id);
  button.textContent = strings.this_is_patient || '✓';
  item.append(text, button);
  return item;
}

/**
 * As the coordinator types a new patient's identity, ask POST /api/patients/duplicates for registered patients who
 * look like them and list them with "This is the patient" (which posts the form with use_patient). Before the
 * form is sent, the check runs once more for what is typed then; the server checks again in any case.
 */
function setupDuplicates(form) {
  const box = form.querySelector('[data-duplicates]');
  const list = form.querySelector('[data-duplicate-list]');
  const status = form.querySelector('[data-duplicates-status]');
  const confirm = form.querySelector('[data-duplicates-checked]');
  const newMode = form.querySelector('#mode-new');
  if (!box || !list || !status || !newMode) return;
  const value = (name) => (form.elements[name] && form.elements[name].value ? form.elements[name].value.trim() : '');
  let controller = null;
  let timer = 0;
  let passThrough = false;

  function query() {
    const body = { family_name: value('family_name'), identifiers: [] };
    if (value('given_names')) body.given_names = value('given_names');
    if (value('birth_date')) body.birth_date = value('birth_date');
    if (value('sex') && value('sex') !== 'unknown') body.sex = value('sex');
    for (const name of ['ins', 'ipp']) if (value(name)) body.identifiers.push(value(name).replace(/\s+/g, ''));
    return body;
  }
  const searchable = () => Boolean(value('family_name') && (value('birth_date') || value('ins') || value('ipp')));

  /** Resolves true once the list shows the look-alikes of what is typed now; false if the check failed. */
  async function check() {
    controller?.abort();
    if (!searchable()) { list.replaceChildren(); box.hidden = true; return true; }
    const mine = new AbortController();
    controller = mine;
    box.hidden = false;
    box.setAttribute('aria-busy', 'true');
    status.textContent = strings.dup_searching || '…';
    try {
      const patients = await api('POST', '/api/patients/duplicates', query(), { signal: mine.signal });
      list.replaceChildren(...patients.map(duplicateItem));
      status.textContent = patients.length ? strings.dup_found || '' : '';
      box.hidden = patients.length === 0;
      return true;
    } catch (error) {
      if (error.name !== 'AbortError') status.textContent = strings.dup_failed || messageOf(error);
      return false;
    } finally {
      if (controller === mine) box.removeAttribute('aria-busy');
    }
  }

  for (const input of form.querySelectorAll('[data-identity-trait]')) {
    input.addEventListener('change', () => { clearTimeout(timer); timer = setTimeout(check, 250); });
  }
  // Before api.js sends the form (it listens on the document): list the look-alikes of what is typed now, so
  // that when the server holds the new record back (409, "take one or tick none of these") the coordinator sees
  // whom to choose from. The server checks again whatever happened here.
  form.addEventListener('submit', async (event) => {
    const submitter = event.submitter;
    if (passThrough) { passThrough = false; return; }
    if (!newMode.checked || (submitter && submitter.name === 'use_patient') || (confirm && confirm.checked)) return;
    event.preventDefault();
    clearTimeout(timer);
    await check();
    // Out of this submit event's dispatch first: a form ignores requestSubmit() while it fires its submit event
    // (HTML "firing submission events"), which a check answered without the network would still be in.
    await new Promise((resolve) => { setTimeout(resolve, 0); });
    passThrough = true;
    form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
  });
}

// --- invitations -------------------------------------------------------------------------------------------

function setupInvite(form) {
  const specialtySelect = form.querySelector('[data-specialty]');
  const person = form.querySelector('[data-person]');
  if (!specialtySelect || !person) return;
  const invited = new Set(Array.from(document.querySelectorAll('[data-invitation-id]')).map((li) => li.dataset.userId));
  let controller = null;
  specialtySelect.addEventListener('change', async () => {
    controller?.abort();
    controller = new AbortController();
    const specialty = specialtySelect.value;
    person.disabled = true;
    person.setAttribute('aria-busy', 'true');
    const placeholder = new Option(strings.loading || '…', '');
    person.replaceChildren(placeholder);
    try {
      const people = await api('GET', `/api/users?specialty=${encodeURIComponent(specialty)}`, undefined, { signal: controller.signal });
      const options = people.filter((p) => !invited.has(String(p.id)))
        .map((p) => {
          // A name kept whole by the migration is marked, as the server-rendered list marks it.
          const name = p.name_to_complete ? `${p.display_name} (${strings.name_to_complete})` : p.display_name;
          return new Option(p.hospital ? `${name} · ${p.hospital}` : name, String(p.id));
        });
      person.replaceChildren(new Option(options.length ? strings.any_person : strings.nobody, ''), ...options);
      if (options.length === 1) person.value = options[0].value;
    } catch (error) {
      if (error.name === 'AbortError') return;
      person.replaceChildren(new Option(messageOf(error), ''));
    } finally {
      person.disabled = false;
      person.removeAttribute('aria-busy');
    }
  });
}

const table = document.querySelector('table[data-agenda][data-editable]');
if (table) setupAgenda(table);
const search = document.querySelector('form[data-patient-search]');
if (search) setupPatientSearch(search);
const addCase = document.querySelector('form[data-add-case]');
if (addCase) setupDuplicates(addCase);
const invite = document.querySelector('form[data-invite]');
if (invite) setupInvite(invite);
