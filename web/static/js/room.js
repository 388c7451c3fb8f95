/**
 * The meeting room page: applies the room's events in order and drives the viewer from them.
 *
 * - Everybody sees the participants (specialty, hospital, here / connection unstable / gone, fast or backup
 *   link), who presents, the agenda with the current case and its panel (question, summary).
 * - The page says at once when it has lost the server (its own heartbeat, roomsocket.js): "reconnecting" over a
 *   dimmed viewer, until a new socket is welcomed; the link in use is named in words ("fast link" for the data
 *   channel, "backup link" for the WebSocket), issue 15 item 4.
 * - The presenter's viewer changes (the layout and, for every viewport it shows: study, series, slice, window,
 *   zoom, pan, invert) go to the room at most 30 times a second, each viewport with only its changed fields;
 *   followers get them as `view.changed` and the viewer `setState`s every shown viewport (prior vs current
 *   side by side stays side by side on every screen).
 * - "Browse freely" detaches this screen (nothing is sent, nothing is applied); "Follow" snaps all viewports
 *   back to the shared view. While following, the viewer's own navigation (wheel, keys, drags, toolbar) is
 *   refused with a hint ("you are following Dr X — press F to browse freely"), so the screen always shows what
 *   the room says (follow.js); F switches between following and browsing, and the presenter's pointer on
 *   another slice shows as an edge marker with the image number (pointer.js), issue 15 item 5. The coordinator moves everybody to the next case and hands the floor over.
 * - Beside the viewer, the participants see and hear each other (conference.js over rtc.js): who muted their
 *   microphone or turned their camera off comes as `participant.media` events, who speaks as `speaker` frames.
 *
 * The client mirrors the server's reducer (rcp/room/state.py) on the event stream; the server stays the
 * authority: a refused command comes back as an error frame and is shown, the state does not change.
 */

import {createViewer} from './viewer.js';
import {visibleCount} from './viewer-state.js';
import {Pointer} from './pointer.js';
import {RoomSocket} from './roomsocket.js';
import {MediaSession} from './rtc.js';
import {api, format, pageStrings} from './api.js';
import {mountDecision} from './decision.js';
import {Conference} from './conference.js';
import {FollowGuard} from './follow.js';
import {RoomLayout} from './room-layout.js';
import {FloorAlerts} from './floor-alerts.js';

const VIEW_SEND_MS = 1000 / 30;

const root = document.querySelector('[data-room]');
const data = JSON.parse(document.getElementById('room-data').textContent);
const L = pageStrings().room;
const me = data.user_id;

const room = {
  participants: new Map(),
  presenter: null,
  requests: [],
  caseId: null,
  view: null,
  marks: new Map(),
};

const viewer = createViewer(root.querySelector('[data-rcp-viewer]'));
const socket = new RoomSocket(data.meeting_id, {
  onSnapshot, onEvent, onPointer: (samples) => pointer.show(samples), onError, onStatus, onPath,
  onWelcome: () => conference?.welcomed(),
  onSpeaker: (userId) => conference?.showSpeaker(userId),
});
const pointer = new Pointer(viewer, (msg) => socket.send(msg));
// Audio, video and the data-channel path: one peer connection with the server (media/), signalled on the socket.
const media = typeof RTCPeerConnection === 'undefined'
  ? null : new MediaSession({signal: (msg) => socket.sendWs(msg), labels: L.video.tile});
const conference = media ? new Conference(root.querySelector('[data-room-video]'), {
  media, labels: L.video, me, send: (msg) => socket.sendWs(msg), status: root.querySelector('[data-room-media]'),
}) : null;
if (media) socket.useMedia(media);
else root.querySelector('[data-room-video]').hidden = true;
viewer.addOverlay(drawMarks);
// The shared view's series of each viewport: the presenter's pointer is shown (on its slice, or as an edge marker
// with its image number) only over the series it was taken on.
pointer.sharedSeries = (i) => (room.view ? (sharedViewports(room.view)[i]?.series_uid || null) : null);
pointer.labels = L.follow;
const guard = new FollowGuard(root, viewer, {
  labels: L.follow,
  following: () => following(),
  presenting: () => presenting(),
  presenterName: () => room.participants.get(room.presenter)?.display_name ?? null,
  setMode: (mode) => socket.send({type: 'mode', mode}),
});
// Images first: tabs / drawer, identity banner, shortcuts (room-layout.js); floor requests for the chair.
const alerts = new FloorAlerts(root.querySelector('[data-floor-alerts]'), {
  labels: {asks: L.asks_floor, ...L.floor_alert},
  soundButton: root.querySelector('[data-room-action="floor-sound"]'),
  give: (userId) => socket.send({type: 'floor.handover', to: userId}),
});
const layout = new RoomLayout(root, {viewer: viewer.element, keys: {
  m: () => conference?.act('mic'),
  g: () => { if (chairs() && room.requests.length) socket.send({type: 'floor.handover', to: room.requests[0]}); },
  escape: () => alerts.dismissLast(),
}});

// ---- state -------------------------------------------------------------------------------------------------

function onSnapshot(state, pointers) {
  room.participants = new Map(state.participants.map((p) => [p.user_id, p]));
  room.presenter = state.presenter;
  room.requests = state.floor_requests.slice();
  room.caseId = state.case_id;
  room.view = state.view;
  room.marks = new Map(state.marks.map((m) => [m.mark_id, m]));
  if (pointers.length) pointer.show(pointers);
  render();
  decisionFetch();
  followView();
  presenterStart();
}

function onEvent(e) {
  switch (e.event) {
    case 'participant.joined': {
      const before = room.participants.get(e.participant.user_id);
      room.participants.set(e.participant.user_id, {...e.participant, mode: before ? before.mode : e.participant.mode});
      break;
    }
    case 'participant.left': {
      const p = room.participants.get(e.user_id);
      if (p && (!e.connection || p.connection === e.connection)) {
        room.participants.set(e.user_id, {...p, connected: false, unstable: false});
        room.requests = room.requests.filter((u) => u !== e.user_id);
      }
      break;
    }
    case 'participant.media': {
      const p = room.participants.get(e.user_id);
      if (p) room.participants.set(e.user_id, {...p, audio_muted: e.audio_muted, video_off: e.video_off});
      break;
    }
    case 'participant.link': {
      const p = room.participants.get(e.user_id);
      if (p && p.connection === e.connection && p.connected) room.participants.set(e.user_id, {...p, unstable: e.unstable});
      break;
    }
    case 'participant.path':
    case 'participant.mode': {
      const p = room.participants.get(e.user_id);
      if (p) room.participants.set(e.user_id, {...p, ...(e.path ? {path: e.path} : {mode: e.mode})});
      if (e.user_id === me && e.mode === 'follow') followView();
      break;
    }
    case 'floor.requested':
      if (!room.requests.includes(e.user_id)) {
        room.requests.push(e.user_id);
        alerts.ring();
      }
      break;
    case 'floor.withdrawn':
      room.requests = room.requests.filter((u) => u !== e.user_id);
      break;
    case 'floor.granted':
      room.presenter = e.user_id;
      room.requests = room.requests.filter((u) => u !== e.user_id);
      pointer.clear();
      presenterStart();
      followView();
      break;
    case 'case.changed':
      room.caseId = e.case_id;
      room.view = e.view;
      pointer.clear();
      presenterStart();
      followView();
      break;
    case 'view.changed':
      room.view = e.view;
      followView();
      break;
    case 'mark.added':
      room.marks.set(e.mark.mark_id, e.mark);
      viewer.redrawOverlays();
      break;
    case 'mark.removed':
      room.marks.delete(e.mark_id);
      viewer.redrawOverlays();
      break;
    case 'decision.field':
    case 'decision.signed':
      if (e.case_id === room.caseId) decisionFetch();
      break;
    default:
      break;
  }
  render();
  // Who is present decides the quorum shown with the decision (and the one a signature checks).
  // A burst of arrivals (the meeting starting) is one read, not one per arrival.
  if (e.event === 'participant.joined' || e.event === 'participant.left') {
    clearTimeout(onEvent.presenceTimer);
    onEvent.presenceTimer = setTimeout(decisionFetch, 300);
  }
}

const mine = () => room.participants.get(me);
const presenting = () => room.presenter === me;
const following = () => !presenting() && (mine()?.mode ?? 'follow') === 'follow';
const chairs = () => mine()?.role === 'coordinator';

// ---- viewer <-> shared view ----------------------------------------------------------------------------------

/** A shared viewport as the room's reducer holds it (rcp/room/events.py Viewport); the defaults of an empty one. */
const EMPTY_SHARED = Object.freeze({study_uid: '', series_uid: '', slice: 0, window_center: null, window_width: null,
  zoom: 1, pan: null, invert: false});
const SHARED_FIELDS = Object.keys(EMPTY_SHARED);

/** The shared view's viewports in order: the flat fields are viewport 0, `others` the next ones. */
function sharedViewports(view) {
  return [view, ...(view.others ?? [])];
}

function toViewport(shared) {
  const v = {...EMPTY_SHARED, ...shared};
  const windowKnown = v.window_center !== null && v.window_width !== null;
  return {
    studyUid: v.study_uid || null,
    seriesUid: v.series_uid || null,
    index: v.slice,
    window: windowKnown ? {center: v.window_center, width: v.window_width} : null,
    zoom: v.zoom,
    pan: v.pan ? {x: v.pan[0], y: v.pan[1]} : null,
    invert: Boolean(v.invert),
  };
}

function fromViewport(vp) {
  return {
    study_uid: vp.studyUid ?? '',
    series_uid: vp.seriesUid ?? '',
    slice: vp.index,
    window_center: vp.window ? vp.window.center : null,
    window_width: vp.window ? vp.window.width : null,
    zoom: vp.zoom,
    pan: vp.pan ? [vp.pan.x, vp.pan.y] : null,
    invert: Boolean(vp.invert),
  };
}

/** The viewer state showing the shared view: every viewport the layout shows; measurements stay this screen's. */
function withSharedView(current, view) {
  const shown = visibleCount(view.layout);
  const shared = sharedViewports(view);
  const viewports = current.viewports.slice();
  for (let i = 0; i < shown; i++) viewports[i] = {...viewports[i], ...toViewport(shared[i] ?? EMPTY_SHARED)};
  return {...current, layout: view.layout, active: Math.min(current.active, shown - 1), viewports};
}

/** A follower's viewer shows the shared view (the layout and all its viewports). */
function followView() {
  if (!room.view || !following()) return;
  viewer.setState(withSharedView(viewer.getState(), room.view));
}

let sendTimer = 0;
let lastSent = 0;

viewer.onChange(() => {
  if (!presenting()) return;
  const wait = lastSent + VIEW_SEND_MS - performance.now();
  if (wait <= 0) sendView();
  else if (!sendTimer) sendTimer = setTimeout(sendView, wait);
});

/**
 * The presenter sends what differs from the shared view (latest state wins within a tick): the layout, and for
 * each viewport the layout shows its changed fields (`{}` when unchanged; trailing ones left out), e.g.
 * `{type: 'view', viewports: [{}, {slice: 12}]}` when the right viewport of a 1x2 layout scrolls.
 */
function sendView() {
  sendTimer = 0;
  lastSent = performance.now();
  if (!presenting() || !room.view) return;
  const state = viewer.getState();
  const shared = sharedViewports(room.view);
  const msg = {};
  if (state.layout !== room.view.layout) msg.layout = state.layout;
  const deltas = state.viewports.slice(0, visibleCount(state.layout)).map((vp, i) => {
    const next = fromViewport(vp);
    const before = {...EMPTY_SHARED, ...(shared[i] ?? {})};
    const delta = {};
    for (const key of SHARED_FIELDS) {
      if (JSON.stringify(next[key]) !== JSON.stringify(before[key])) delta[key] = next[key];
    }
    return delta;
  });
  // Only DICOM UIDs go to the room (a series opened from elsewhere, e.g. a local file, is not shared).
  const uid = (v) => v === undefined || /^[0-9.]{0,64}$/.test(v);
  if (deltas.some((d) => !uid(d.study_uid) || !uid(d.series_uid))) return;
  while (deltas.length && !Object.keys(deltas[deltas.length - 1]).length) deltas.pop();
  if (deltas.length) msg.viewports = deltas;
  if (Object.keys(msg).length) socket.send({type: 'view', ...msg});
}

/** On becoming presenter (or on a new case): start from the shared view; open the study's first series. */
async function presenterStart() {
  pointer.setPresenting(presenting());
  if (!presenting() || !room.view) return;
  await viewer.setState(withSharedView(viewer.getState(), room.view));
  if (room.view.study_uid && !room.view.series_uid) {
    const response = await fetch(`/api/imaging/studies/${encodeURIComponent(room.view.study_uid)}/series`);
    if (!response.ok) return;
    const series = await response.json();
    if (series.length) await viewer.loadSeries(0, series[0].url);
  }
}

// ---- marks -----------------------------------------------------------------------------------------------------

function drawMarks(ctx, view) {
  if (!view.frame) return;
  for (const mark of room.marks.values()) {
    if (mark.sop_uid !== view.frame.sop_uid || mark.frame !== (view.frame.frame ?? 1)) continue;
    ctx.strokeStyle = '#ffd60a';
    ctx.fillStyle = '#ffd60a';
    ctx.lineWidth = 2;
    if (mark.kind === 'key_image') {
      ctx.font = '14px system-ui, sans-serif';
      ctx.fillText(`★ ${L.key_image}`, 8, view.height - 10);
    }
    const points = mark.points.map(([x, y]) => view.imageToScreen(x, y)).filter(Boolean);
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
    if (points.length === 1) ctx.arc(points[0].x, points[0].y, 5, 0, Math.PI * 2);
    ctx.stroke();
    if (mark.label && points.length) ctx.fillText(mark.label, points[0].x + 8, points[0].y - 8);
  }
}

function markKeyImage() {
  const vp = viewer.getState().viewports[0];
  const frame = viewer.seriesFor(0)?.frames?.[vp.index];
  if (!frame) return;
  // The study and series go with the mark: the signature's Key Object Selection references them (PS3.3 C.17.2.1).
  const uid = (v) => (typeof v === 'string' && /^[0-9.]{1,64}$/.test(v) ? v : undefined);
  socket.send({type: 'mark.add', kind: 'key_image', sop_uid: frame.sop_uid, frame: frame.frame ?? 1,
    study_uid: uid(vp.studyUid), series_uid: uid(vp.seriesUid)});
}

// ---- the current case's decision ------------------------------------------------------------------------------
//
// The room only says *that* a field changed (`decision.field`: case, field, version, editor; no text, see
// rcp/room/decisions.py); this page then reads the decision through the audited API and hands the new values to
// decision.js as `rcp:decision-field` events, which applies them unless the user is typing in that field (then
// their next save meets the 409 and both texts are shown). The same read refreshes the quorum line (attendance
// comes from the room) and shows the sign button to whoever the server says may sign (`signing.may_sign`: a physician
// present when the case was discussed, from their own sign-in; rcp/minutes/versions.py check_signer).

const decisionBox = root.querySelector('[data-room-decision]');
let form = null;
let formCase = null;
let fetching = null;
let fetchAgain = false;

function showDecision() {
  decisionBox.hidden = room.caseId === null;
  if (room.caseId === null || room.caseId === formCase) return;
  formCase = room.caseId;
  if (!form) {
    form = mountDecision(decisionBox.querySelector('[data-decision]'), {caseId: formCase});
    // decision.js renders its summary from every state it reads (mount, case change, after signing): take the
    // same state for the room's quorum line and sign button.
    const show = form.showSummary.bind(form);
    form.showSummary = (state) => { show(state); decisionState(state); };
  } else form.setCase(formCase);
}

/** Read the current case's decision once more; calls arriving meanwhile coalesce into one more read. */
function decisionFetch() {
  if (!form || room.caseId === null) return;
  if (fetching) { fetchAgain = true; return; }
  const caseId = room.caseId;
  fetching = api('GET', `/api/cases/${caseId}/decision`).then((state) => {
    if (caseId !== room.caseId || caseId !== form.caseId) return;
    for (const [name, field] of Object.entries(state.draft.fields)) {
      if (field.version > 0) {
        document.dispatchEvent(new CustomEvent('rcp:decision-field', {detail: {
          case_id: caseId, name, value: field.value, version: field.version, editor_id: field.editor_id}}));
      }
    }
    form.showSummary(state);
  }, (error) => onError({message: error.message})).finally(() => {
    fetching = null;
    if (fetchAgain) { fetchAgain = false; decisionFetch(); }
  });
}

function decisionState(state) {
  if (state.case_id !== room.caseId) return;
  const line = decisionBox.querySelector('[data-room-quorum]');
  const q = state.quorum;
  if (q) {
    // The server words the quorum as the meeting page does (rcp.scheduling.quorum_statement): "present now".
    const present = (state.attendees || []).map((a) => `${a.name} (${specialtyOf(a)})`);
    line.textContent = q.statement + (present.length ? ` · ${format(L.present, {names: present.join(', ')})}` : '');
    line.dataset.met = String(q.met);
  } else {
    line.textContent = '';
    delete line.dataset.met;
  }
  // The responsible physician's choices are the attendees present now (people join after the form was built).
  const select = decisionBox.querySelector('[data-field="responsible_physician"] select');
  const attendees = state.attendees || [];
  if (select && JSON.stringify(form.attendees) !== JSON.stringify(attendees)) {
    const chosen = select.value;
    form.attendees = attendees;
    const options = [new Option('—', ''), ...attendees.map((a) => new Option(a.name, String(a.user_id)))];
    select.replaceChildren(...options);
    select.value = chosen;
  }
  decisionBox.dataset.signed = String(state.versions.length > 0);
  const button = decisionBox.querySelector('[data-decision] > button.primary');
  if (button) button.hidden = !state.signing?.may_sign || state.versions.length > 0;
}

// ---- page --------------------------------------------------------------------------------------------------

function onError(msg) {
  const box = root.querySelector('[data-room-message]');
  box.textContent = msg.message;
  box.hidden = false;
  clearTimeout(onError.timer);
  onError.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

/**
 * The connection as the page knows it (roomsocket.js): "reconnecting" at once when its heartbeat goes
 * unanswered, over a dimmed viewer with a notice that the images may be out of date, until a new socket is
 * welcomed (then the snapshot or the missed events bring the screen up to date).
 */
function onStatus(state) {
  // Back after an outage: the missed events came with the welcome; the decision is read again too (a read that
  // failed while the network was gone is not retried by anything else).
  if (state === 'open' && root.dataset.status === 'reconnecting') decisionFetch();
  root.querySelector('[data-room-status]').textContent = L.status[state] ?? state;
  root.dataset.status = state;
  const panel = root.querySelector('[data-rcp-viewer]');
  let notice = panel.querySelector('[data-room-offline]');
  if (!notice) {
    notice = el('p', {class: 'room-offline', role: 'status', 'aria-live': 'assertive', dataset: {roomOffline: ''}},
      L.link.reconnecting);
    notice.hidden = true;
    panel.append(notice);
  }
  const offline = state === 'reconnecting' || state === 'connecting' && socket.seq !== null;
  notice.hidden = !offline;
  panel.classList.toggle('room-viewer-offline', offline);
  onPath(socket.path);
}

/** The link in use, in words: the data channel is the "fast link", the WebSocket the "backup link". */
function onPath(path) {
  const node = root.querySelector('[data-room-path]');
  const shown = socket.state === 'open' ? path : 'none';
  node.textContent = L.link[shown];
  node.title = L.link[`${shown}_title`];
  node.dataset.path = shown;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** The microphone-muted / camera-off marks of the participants list (icons drawn by video.css). */
function mediaFlags(p) {
  if (!p.connected) return [];
  return [[p.audio_muted, 'rtc-muted', L.video.muted], [p.video_off, 'rtc-video-off', L.video.video_off]]
    .filter(([on]) => on)
    .map(([, flag, label]) => el('span', {class: 'rtc-flag', role: 'img', 'aria-label': label, title: label,
      dataset: {flag}}));
}

/** A participant's or attendee's specialty as shown; a guest (join link) is "guest, invited as surgeon". */
function specialtyOf(p) {
  const label = data.specialties[p.specialty] ?? p.specialty;
  return p.guest ? L.guest_as.replace('%(specialty)s', label) : label;
}

function render() {
  conference?.showParticipants(room.participants.values(), data.specialties, specialtyOf);
  const list = root.querySelector('[data-room-participants]');
  const people = [...room.participants.values()].sort(
    (a, b) => Number(b.connected) - Number(a.connected) || a.display_name.localeCompare(b.display_name));
  list.replaceChildren(...people.map((p) => {
    const badges = [];
    if (p.user_id === room.presenter) badges.push(el('span', {class: 'badge presenter'}, L.presenting));
    if (room.requests.includes(p.user_id)) badges.push(el('span', {class: 'badge request'}, L.asks_floor));
    if (p.connected && p.mode === 'free') badges.push(el('span', {class: 'badge free'}, L.browsing));
    if (p.connected && p.unstable) badges.push(el('span', {class: 'badge unstable', dataset: {unstable: ''}}, L.link.unstable));
    if (p.connected) badges.push(el('span', {class: 'badge path', title: L.path_title}, L.link[p.path === 'dc' ? 'dc' : 'ws']));
    let action = null;
    if (chairs() && p.connected && p.user_id !== room.presenter) {
      action = el('button', {type: 'button', class: 'small', dataset: {handover: p.user_id}}, L.hand_over);
    }
    const presence = !p.connected ? 'gone' : p.unstable ? 'unstable' : 'here';
    return el('li', {class: presence, dataset: {userId: p.user_id, presence}},
      el('span', {class: 'presence', title: presence === 'unstable' ? L.link.unstable : p.connected ? L.here : L.gone}),
      el('span', {class: 'name'}, p.display_name),
      ...mediaFlags(p),
      el('span', {class: 'spec'}, [specialtyOf(p), p.hospital].filter(Boolean).join(' · ')),
      ...badges, action);
  }));

  const presenter = room.participants.get(room.presenter);
  root.querySelector('[data-room-presenter]').textContent = presenter ? presenter.display_name : L.nobody;
  const show = (name, visible) => { root.querySelector(`[data-room-action="${name}"]`).hidden = !visible; };
  const holderHere = presenter && presenter.connected;
  show('take', !presenting() && (chairs() || !holderHere));
  show('request', !presenting() && !chairs() && holderHere && !room.requests.includes(me));
  show('withdraw', room.requests.includes(me));
  show('release', presenting());
  show('follow', !presenting() && mine()?.mode === 'free');
  show('free', !presenting() && (mine()?.mode ?? 'follow') === 'follow');
  show('next-case', chairs());
  show('close-case', chairs() && room.caseId != null);
  show('key-image', presenting() || chairs());
  root.dataset.presenting = String(presenting());
  root.dataset.mode = presenting() ? 'present' : (mine()?.mode ?? 'follow');
  guard.render();

  for (const item of root.querySelectorAll('[data-case-id]')) {
    const current = Number(item.dataset.caseId) === room.caseId;
    item.classList.toggle('current', current);
    if (current) item.setAttribute('aria-current', 'true');
    else item.removeAttribute('aria-current');
  }
  const item = data.agenda.find((c) => c.id === room.caseId);
  const panel = root.querySelector('[data-room-case]');
  panel.querySelector('[data-case-question]').textContent = item ? item.question : L.no_case;
  panel.querySelector('[data-case-summary]').textContent = item ? item.clinical_summary : '';
  panel.querySelector('[data-case-staging]').textContent = item ? item.staging : '';
  root.querySelector('[data-room-seq]').textContent = socket.seq ?? '–';
  showDecision();
  showLayout();
}

/** What the layout shows of the room: the current case's identity banner, the floor requests (room-layout.js,
 * floor-alerts.js); the chair opens a case from the keyboard too. */
function showLayout() {
  layout.showCase(room.caseId);
  // While a case is discussed the clinicians write its decision; the chair runs the agenda.
  layout.suggest(room.caseId !== null && !chairs() ? 'decision' : 'agenda');
  const asking = room.requests.map((id) => room.participants.get(id)).filter((p) => p && p.connected);
  alerts.show(asking.map((p) => ({user_id: p.user_id, name: p.display_name})), {chair: chairs()});
  const count = root.querySelector('[data-request-count]');
  count.textContent = String(asking.length);
  count.hidden = !asking.length;
  count.title = L.floor_alert.requests;
  for (const item of root.querySelectorAll('[data-case-id]')) {
    if (chairs()) {
      item.setAttribute('role', 'button');
      item.tabIndex = 0;
    } else {
      item.removeAttribute('role');
      item.removeAttribute('tabindex');
    }
  }
}

root.addEventListener('keydown', (e) => {
  const item = e.target.closest?.('[data-case-id][role="button"]');
  if (!item || (e.key !== 'Enter' && e.key !== ' ')) return;
  e.preventDefault();
  item.click();
});

root.addEventListener('click', (e) => {
  const target = e.target.closest('button, [data-case-id]');
  if (!target) return;
  if (target.dataset.handover) {
    socket.send({type: 'floor.handover', to: Number(target.dataset.handover)});
    return;
  }
  if (target.dataset.caseId && chairs()) {
    socket.send({type: 'case.set', case_id: Number(target.dataset.caseId)});
    return;
  }
  switch (target.dataset.roomAction) {
    case 'take': socket.send({type: 'floor.take'}); break;
    case 'request': socket.send({type: 'floor.request'}); break;
    case 'withdraw': socket.send({type: 'floor.withdraw'}); break;
    case 'release': socket.send({type: 'floor.release'}); break;
    case 'follow': socket.send({type: 'mode', mode: 'follow'}); break;
    case 'free': socket.send({type: 'mode', mode: 'free'}); break;
    case 'next-case': socket.send({type: 'case.next'}); break;
    case 'close-case': socket.send({type: 'case.close'}); break;
    case 'key-image': markKeyImage(); break;
    default: break;
  }
});

onPath('ws');
conference?.start(); // camera and microphone if allowed; the room works without them (see conference.js)
socket.start();
// for the end-to-end tests and debugging
window.rcpRoom = {room, socket, viewer, pointer, media, conference, guard, layout, alerts, decision: () => form};
