/**
 * The room's videoconference panel, beside the shared viewer: the local preview and one tile per other
 * participant (rtc.js `MediaSession` makes them), the microphone / camera / low-bandwidth controls, the device
 * lists, and the messages when a device is refused or missing.
 *
 * Why here and not in room.js: room.js applies the room's events; this panel only needs, from them, who is who
 * (name, specialty), who muted or turned their camera off (`participant.media`) and who speaks (`speaker`).
 * Every text comes from the page's table of strings (room_strings.html, translated); rtc.js carries none.
 *
 * The room learns this browser's microphone and camera state from `media.state` {audio_muted, video_off}: sent
 * once the devices are known, on every toggle, and again after every welcome (a new connection starts with the
 * server's defaults). No camera or microphone counts as off: the meeting goes on, the tile shows initials.
 *
 * Example (room.js):
 *   const conference = new Conference(root.querySelector('[data-room-video]'), {
 *     media, labels: L.video, me, send: (msg) => socket.sendWs(msg), status: root.querySelector('[data-room-media]')});
 *   conference.start();
 *   // from the room's reducer / socket:
 *   conference.showParticipants(room.participants.values(), data.specialties);
 *   conference.showSpeaker(userId);
 *   conference.welcomed();
 */

/** Progress shown only for what lasts longer than a blink (a device prompt, a connection). */
const PROGRESS_DELAY_MS = 300;

export class Conference {
  /**
   * @param {HTMLElement} section  the `[data-room-video]` panel of room.html
   * @param {object} options
   * @param {import('./rtc.js').MediaSession} options.media
   * @param {object} options.labels  the template's `labels.video`
   * @param {number} options.me  this user's id
   * @param {(message: object) => void} options.send  to the room's WebSocket
   * @param {HTMLElement} [options.status]  the header's media status
   */
  constructor(section, {media, labels, me, send, status = null}) {
    this.section = section;
    this.media = media;
    this.L = labels;
    this.me = String(me);
    this.send = send;
    this.status = status;
    this.strip = section.querySelector('[data-room-tiles]');
    this.notice = section.querySelector('[data-video-notice]');
    this.progress = section.querySelector('[data-video-progress]');
    this.people = new Map();
    this.known = false; // the devices were asked for (media.state can be told)
    this.busy = new Map(); // what is in progress, by key -> label
    this.progressTimer = 0;

    media.addEventListener('tile', (e) => this.onTile(e.detail.participant, e.detail.element));
    media.addEventListener('tile-removed', (e) => e.detail.element.remove());
    media.addEventListener('devices', (e) => this.onDevices(e.detail));
    media.addEventListener('state', (e) => this.onState(e.detail.state));
    this.strip.addEventListener('click', (e) => {
      const tile = e.target.closest('.rtc-needs-click');
      if (tile) this.replay(tile);
    });
    this.strip.addEventListener('keydown', (e) => {
      const tile = e.target.closest('.rtc-needs-click');
      if (!tile || (e.key !== 'Enter' && e.key !== ' ')) return;
      e.preventDefault();
      this.replay(tile);
    });
    section.addEventListener('click', (e) => {
      const button = e.target.closest('[data-video-action]');
      if (button) this.act(button.dataset.videoAction);
    });
    section.addEventListener('change', (e) => {
      const select = e.target.closest('select[data-device]');
      if (select && select.value) this.choose(select.dataset.device, select.value);
    });
    navigator.mediaDevices?.addEventListener?.('devicechange', () => this.listDevices());
    // A tile out of view (scrolled away in the aside, panel hidden) costs no video bandwidth.
    media.autoPause();
  }

  /** Ask for the camera and microphone (the browser may prompt) and show the local preview meanwhile. */
  async start() {
    const mine = this.people.get(this.me);
    this.strip.prepend(this.media.previewTile(this.me, mine ? mine.display_name : ''));
    this.onState(this.media.state);
    this.controls();
    await this.during('devices', this.L.starting, () => this.media.start());
  }

  // -- the room tells ---------------------------------------------------------------------------------------
  /** Names, specialties and microphone / camera states of the participants (room.js's reducer has them). */
  showParticipants(participants, specialties = {}, specialtyOf = null) {
    for (const p of participants) {
      const id = String(p.user_id);
      this.people.set(id, p);
      if (id === this.me) {
        if (this.media.preview) this.media.previewTile(this.me, p.display_name);
        continue;
      }
      const detail = [specialtyOf ? specialtyOf(p) : (specialties[p.specialty] ?? p.specialty), p.hospital]
        .filter(Boolean).join(' · ');
      this.media.setName(id, p.display_name, detail);
      this.media.setRemoteState(id, {audioMuted: Boolean(p.audio_muted), videoOff: Boolean(p.video_off)});
    }
  }

  /** The active speaker's user id (or null), from the welcome and the `speaker` frames. */
  showSpeaker(userId) {
    this.media.setSpeaker(userId === null || userId === undefined ? null : String(userId));
  }

  /** A (re)connection to the room: it starts from the defaults, so say again how the devices are. */
  welcomed() {
    this.tell(true);
  }

  // -- the user does ----------------------------------------------------------------------------------------
  async act(action) {
    const local = this.media.local;
    if (action === 'low-bandwidth') {
      this.media.setLowBandwidth(!this.media.lowBandwidth);
    } else if (action === 'mic' || action === 'camera') {
      const kind = action === 'mic' ? 'audio' : 'video';
      if (!local[kind]) {
        // None yet (refused, missing, unplugged): ask again; the browser may prompt.
        this.media.setEnabled(kind, true);
        await this.during(kind, this.L.starting, () => this.media.start({audio: kind === 'audio', video: kind === 'video'}));
        return;
      }
      this.media.setEnabled(kind, !local[`${kind}Enabled`]);
      this.tell();
    }
    this.controls();
  }

  async choose(kind, deviceId) {
    const which = kind === 'videoinput' ? 'video' : 'audio';
    await this.during(which, this.L.switching, () => this.media.useDevice(which, deviceId));
  }

  replay(tile) {
    const video = tile.querySelector('video');
    video?.play().then(() => {
      tile.classList.remove('rtc-needs-click');
      tile.removeAttribute('tabindex');
      tile.removeAttribute('role');
    }, () => {});
  }

  // -- the media session says -------------------------------------------------------------------------------
  onTile(participant, element) {
    element.title = this.L.play_hint;
    this.strip.append(element);
    const p = this.people.get(participant);
    if (p) this.media.setRemoteState(participant, {audioMuted: Boolean(p.audio_muted), videoOff: Boolean(p.video_off)});
  }

  onDevices(detail) {
    this.known = true;
    this.notice.textContent = this.deviceText(detail);
    this.notice.hidden = !this.notice.textContent;
    this.controls();
    this.tell();
    this.listDevices();
  }

  onState(state) {
    this.section.dataset.mediaState = state;
    if (this.status) {
      this.status.textContent = this.L.state[state] ?? '';
      this.status.dataset.state = state;
      this.status.hidden = !this.status.textContent;
    }
    if (state === 'connecting' || state === 'reconnecting') this.busy.set('connection', this.L.state[state]);
    else this.busy.delete('connection');
    this.showProgress();
  }

  // -- showing ----------------------------------------------------------------------------------------------
  /** The message for a refused or missing camera / microphone, in the page's language. */
  deviceText({audio, video, error}) {
    if (audio && video) return '';
    if (!audio && !video) return error ? (this.L.errors[error] ?? this.L.errors.other) : '';
    return video ? this.L.no_microphone : this.L.no_camera;
  }

  /** The buttons say what they will do; a missing device's button asks for it again. */
  controls() {
    const local = this.media.local;
    const set = (action, on, text) => {
      const button = this.section.querySelector(`[data-video-action="${action}"]`);
      button.dataset.on = String(on);
      button.querySelector('[data-label]').textContent = text;
      button.disabled = this.busy.has(action === 'mic' ? 'audio' : 'video') || this.busy.has('devices');
    };
    set('mic', local.sendingAudio, local.sendingAudio ? this.L.mute : this.L.unmute);
    set('camera', local.sendingVideo, local.sendingVideo ? this.L.camera_off : this.L.camera_on);
    const low = this.section.querySelector('[data-video-action="low-bandwidth"]');
    low.setAttribute('aria-pressed', String(this.media.lowBandwidth));
    this.section.dataset.lowBandwidth = String(this.media.lowBandwidth);
  }

  /** Tell the room how this browser's microphone and camera are (only what changed, unless `always`). */
  tell(always = false) {
    if (!this.known) return;
    const local = this.media.local;
    const state = {audio_muted: !local.sendingAudio, video_off: !local.sendingVideo};
    const key = JSON.stringify(state);
    if (!always && key === this.told) return;
    if (this.send({type: 'media.state', ...state}) !== false) this.told = key;
  }

  /** Fill the camera / microphone lists (labels only once access was granted, hence numbered names before). */
  async listDevices() {
    const lists = await this.media.devices();
    const current = {};
    for (const track of this.media.localStream.getTracks()) {
      current[track.kind === 'video' ? 'videoinput' : 'audioinput'] = track.getSettings?.().deviceId ?? '';
    }
    for (const [kind, name] of [['videoinput', this.L.camera], ['audioinput', this.L.microphone]]) {
      const select = this.section.querySelector(`select[data-device="${kind}"]`);
      const devices = lists[kind];
      const options = devices.map((d, i) => new Option(d.label || `${name} ${i + 1}`, d.deviceId));
      if (!options.length) options.push(new Option(this.L.no_device, ''));
      select.replaceChildren(...options);
      select.disabled = !devices.length;
      if (current[kind]) select.value = current[kind];
    }
  }

  /** Run `work` showing `label` as progress if it takes longer than a blink; the controls wait meanwhile. */
  async during(key, label, work) {
    this.busy.set(key, label);
    this.controls();
    this.showProgress();
    try {
      return await work();
    } finally {
      this.busy.delete(key);
      this.controls();
      this.showProgress();
    }
  }

  showProgress() {
    clearTimeout(this.progressTimer);
    const text = [...this.busy.values()].filter(Boolean).at(-1) ?? '';
    this.section.dataset.busy = String(Boolean(text));
    if (!text) {
      this.progress.hidden = true;
      this.progress.textContent = '';
      return;
    }
    this.progressTimer = setTimeout(() => {
      this.progress.textContent = text;
      this.progress.hidden = false;
    }, this.progress.hidden ? PROGRESS_DELAY_MS : 0);
  }
}
