/**
 * The browser's end of the media plane: one RTCPeerConnection with the server (media/peer.py), carrying the
 * local camera and microphone, the other participants' audio and video, and the room's two data channels.
 *
 * Why this shape:
 * - The browser always offers. Its offer holds one `sendonly` audio + video (camera and microphone, attached
 *   later with `replaceTrack`, so changing device or starting without a camera needs no renegotiation) and
 *   `slots` `recvonly` audio + video pairs. The server points each slot at a participant and says which with a
 *   `media.slots` message {slots: [{mid, kind, participant, paused}]}: people come and go without
 *   renegotiation, which aiortc handles poorly.
 * - Only VP8 and Opus are offered (`setCodecPreferences`): the server forwards packets without re-encoding, so
 *   everybody must use the same codec; it also keeps a twelve-person offer small.
 * - The data channels are created here: `view` (reliable, ordered) and `pointer` (unordered, no retransmits).
 *   Messages arrive as `message` events {detail: {channel, data}}; `send(channel, data)` returns false when the
 *   channel is not open, so the caller can use the WebSocket instead.
 * - When the path breaks (UDP blocked, Wi-Fi to 4G), the state becomes `reconnecting` and a *fresh* peer
 *   connection is offered (aiortc does not support ICE restarts), with growing delays; tiles stay up, marked
 *   `reconnecting`, instead of freezing silently.
 * - Camera or microphone refused or missing: the meeting goes on without them; a `devices` event says which
 *   devices run and the browser's `error` name, which the page words in its language (conference.js). This module
 *   carries no text for people: the tiles' texts are the page's (`labels`, from its table of strings).
 * - Receiving a video costs bandwidth: `pause(participant, paused, reason)` combines reasons (a tile scrolled out
 *   of view with `autoPause`, the page's own), and `setLowBandwidth(true)` keeps only the featured speaker's
 *   video; the server is asked (`media.pause`) only when the outcome changes, and its `media.slots` says what
 *   it does. Audio is never paused.
 *
 * Example (the room page owns the WebSocket):
 *   import {MediaSession} from '/static/js/rtc.js';
 *   const media = new MediaSession({signal: (msg) => ws.send(JSON.stringify(msg)), iceServers: welcome.ice_servers});
 *   media.addEventListener('tile', (e) => strip.append(e.detail.element));
 *   media.addEventListener('message', (e) => room.receive(e.detail.channel, e.detail.data));
 *   media.addEventListener('devices', (e) => e.detail.error && banner.show(myTexts[e.detail.error]));
 *   await media.start();                // asks for camera and microphone
 *   strip.prepend(media.previewTile(myId, myName));  // or media.attachPreview(videoElement)
 *   await media.connect();              // sends {type: 'rtc.offer', sdp}
 *   ws.onmessage = (m) => { const msg = JSON.parse(m.data); if (media.handles(msg)) media.handle(msg); };
 */

export const CHANNELS = Object.freeze({
  view: {ordered: true},
  pointer: {ordered: false, maxRetransmits: 0},
});

/** Messages the media session consumes from the room's WebSocket. */
export const SIGNALS = Object.freeze(['rtc.answer', 'media.slots']);

/** Narrow a transceiver's codecs to one per kind (VP8 / Opus) plus retransmission. */
function preferCodecs(transceiver, kind) {
  if (typeof transceiver.setCodecPreferences !== 'function' || !RTCRtpReceiver.getCapabilities) return;
  const capabilities = RTCRtpReceiver.getCapabilities(kind);
  if (!capabilities) return;
  const wanted = kind === 'video' ? ['video/vp8', 'video/rtx'] : ['audio/opus'];
  const codecs = capabilities.codecs.filter((c) => wanted.includes(c.mimeType.toLowerCase()));
  if (codecs.length) {
    try { transceiver.setCodecPreferences(codecs); } catch (err) { /* keep the browser's defaults */ }
  }
}

/** The texts a tile shows, by key; the page passes them translated (`labels` option: the room's table of strings,
 *  web/templates/room_strings.html). No English fallback: a page that passes none shows icons without words. */
export const LABELS = Object.freeze({you: '', muted: '', videoOff: '', speaking: '', paused: '', reconnecting: ''});

/** The state flags a tile can show, as [class on the tile, label key]; video.css draws each one's icon. */
const FLAGS = Object.freeze([
  ['rtc-speaking', 'speaking'], ['rtc-muted', 'muted'], ['rtc-video-off', 'videoOff'], ['rtc-paused', 'paused'],
]);

/** Titles left out of the initials ("Dr Amélie Rousseau" is AR, not DA). */
const TITLES = /^(dr|pr|prof|mme|mlle|m|mr|mrs|ms)\.?$/i;

/** The id the server knows a participant by: the room's user ids are numbers, tiles are keyed by strings. */
function wireId(participant) {
  return /^\d+$/.test(String(participant)) ? Number(participant) : participant;
}

/**
 * One participant's media: a figure with a video element (which also plays the audio), initials shown when there
 * is no picture, state flags (speaking, microphone muted, camera off, video paused) and a caption (name, detail).
 */
export class Tile {
  constructor(participant, name, {stream = new MediaStream(), labels = LABELS} = {}) {
    this.participant = participant;
    this.stream = stream;
    this.element = document.createElement('figure');
    this.element.className = 'rtc-tile rtc-no-video';
    this.element.dataset.participant = participant;
    this.element.dataset.reconnectingLabel = labels.reconnecting;
    this.video = document.createElement('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.initials = document.createElement('span');
    this.initials.className = 'rtc-initials';
    this.initials.setAttribute('aria-hidden', 'true');
    const flags = document.createElement('span');
    flags.className = 'rtc-flags';
    for (const [name, key] of FLAGS) {
      const flag = document.createElement('span');
      flag.className = 'rtc-flag';
      flag.dataset.flag = name;
      flag.setAttribute('role', 'img');
      flag.setAttribute('aria-label', labels[key]);
      flag.title = labels[key];
      flags.append(flag);
    }
    this.caption = document.createElement('figcaption');
    this.name = document.createElement('span');
    this.name.className = 'rtc-name';
    this.detail = document.createElement('span');
    this.detail.className = 'rtc-detail';
    this.caption.append(this.name, this.detail);
    this.element.append(this.video, this.initials, flags, this.caption);
    this.setName(name || participant);
  }

  /** The caption: a name and an optional detail line (e.g. the specialty); initials from `initialsOf`. */
  setName(name, detail = '', initialsOf = name) {
    this.name.textContent = name;
    this.detail.textContent = detail;
    this.detail.hidden = !detail;
    const words = String(initialsOf).split(/\s+/).filter((w) => w && !TITLES.test(w));
    this.initials.textContent = words.slice(0, 2).map((w) => w[0]).join('').toUpperCase();
  }

  show(kind, track) {
    for (const old of this.stream.getTracks().filter((t) => t.kind === kind)) this.stream.removeTrack(old);
    if (track) this.stream.addTrack(track);
    if (kind === 'video') this.element.classList.toggle('rtc-no-video', !track);
    this.play();
  }

  /**
   * Play the stream once it has a track. A media element whose stream has none never gets data, and it delays
   * the document's load event until it does (HTML, "delaying the load event" of media elements): a page without
   * camera would never finish loading.
   */
  play() {
    const stream = this.stream.getTracks().length ? this.stream : null;
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    if (!stream) return;
    const play = this.video.play();
    // Autoplay refused: the tile becomes a button (click, or Enter / Space once focused) that starts it.
    if (play && play.catch) {
      play.catch(() => {
        this.element.classList.add('rtc-needs-click');
        this.element.tabIndex = 0;
        this.element.setAttribute('role', 'button');
      });
    }
  }

  flag(name, on) { this.element.classList.toggle(name, Boolean(on)); }
}

export class MediaSession extends EventTarget {
  /**
   * @param {object} options
   * @param {(message: object) => void} options.signal  sends {type: 'rtc.offer'|'rtc.ice'|'rtc.close', ...}
   * @param {RTCIceServer[]} [options.iceServers]  from the server's settings (STUN/TURN); none on loopback
   * @param {number} [options.slots]  how many other participants can be seen and heard (server's room size - 1)
   * @param {Map<string,string>|object} [options.names]  participant id -> display name for tile captions
   * @param {object} [options.labels]  translated tile texts (see LABELS)
   */
  constructor({signal, iceServers = [], slots = 11, names = {}, labels = {}} = {}) {
    super();
    if (typeof signal !== 'function') throw new TypeError('MediaSession needs a signal(message) function');
    this.signal = signal;
    this.iceServers = iceServers;
    this.slots = slots;
    this.names = new Map(names instanceof Map ? names : Object.entries(names));
    this.details = new Map();
    this.labels = {...LABELS, ...labels};
    this.state = 'new';
    this.localStream = new MediaStream();
    this.deviceError = null;
    this.tiles = new Map();
    this.speaker = null;
    this.featured = null;
    this.lowBandwidth = false;
    this.preview = null;
    this.me = null;
    this.pc = null;
    this.channels = {};
    this._slotMap = [];
    this._senders = {};
    this._attempt = 0;
    this._retryTimer = null;
    this._disconnectTimer = null;
    this._closed = false;
    this._answered = false;
    this._pendingIce = [];
    this._enabled = {audio: true, video: true};
    this._pauses = new Map();
    this._asked = new Map();
    this._slotPaused = new Map();
  }

  // -- local devices ----------------------------------------------------------------------------------------
  /** Ask for camera and microphone; on failure try each alone; never throws. Emits `devices`. */
  async start({audio = true, video = true, audioDeviceId = '', videoDeviceId = ''} = {}) {
    const constraints = {
      audio: audio ? (audioDeviceId ? {deviceId: {exact: audioDeviceId}} : true) : false,
      video: video ? {
        ...(videoDeviceId ? {deviceId: {exact: videoDeviceId}} : {}),
        width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 30},
      } : false,
    };
    let stream = null;
    let error = null;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      error = {name: 'insecure'};
    } else {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints);
      } catch (err) {
        error = err;
        // One device missing or broken should not cost the other one.
        for (const only of ['audio', 'video']) {
          if (!constraints[only] || stream) continue;
          try {
            stream = await navigator.mediaDevices.getUserMedia({[only]: constraints[only]});
          } catch (ignored) { /* keep the first error for the message */ }
        }
      }
    }
    for (const track of this.localStream.getTracks()) {
      if (stream && stream.getTracks().some((t) => t.kind === track.kind)) {
        this.localStream.removeTrack(track);
        track.stop();
      }
    }
    if (stream) {
      for (const track of stream.getTracks()) {
        track.enabled = this._enabled[track.kind] !== false; // a muted microphone stays muted on a new device
        this.localStream.addTrack(track);
      }
    }
    this.deviceError = error;
    this._showPreview();
    const has = (kind) => this.localStream.getTracks().some((t) => t.kind === kind);
    this._emit('devices', {audio: has('audio'), video: has('video'), error: error ? error.name : null});
    await this._attachLocalTracks();
    return this.localStream;
  }

  /** Cameras and microphones to choose from (labels appear once access was granted). */
  async devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return {audioinput: [], videoinput: []};
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      audioinput: all.filter((d) => d.kind === 'audioinput'),
      videoinput: all.filter((d) => d.kind === 'videoinput'),
    };
  }

  /** Switch to another camera or microphone without renegotiating. */
  async useDevice(kind, deviceId) {
    return this.start({audio: kind === 'audio', video: kind === 'video',
      audioDeviceId: kind === 'audio' ? deviceId : '', videoDeviceId: kind === 'video' ? deviceId : ''});
  }

  /**
   * Mute the microphone or turn the camera off (the track keeps its sender: a disabled track sends silence or
   * black frames, W3C Media Capture §4.3.1; the room tells the others so their tiles show it). Remembered for
   * devices chosen later.
   */
  setEnabled(kind, enabled) {
    this._enabled[kind] = Boolean(enabled);
    for (const track of this.localStream.getTracks()) if (track.kind === kind) track.enabled = Boolean(enabled);
    this._showPreview();
  }

  /** What this participant sends: whether a microphone / camera track exists and whether it is enabled. */
  get local() {
    const has = (kind) => this.localStream.getTracks().some((t) => t.kind === kind && t.readyState === 'live');
    const audio = has('audio');
    const video = has('video');
    const {audio: audioEnabled, video: videoEnabled} = this._enabled;
    // `sending*`: what the others actually get (a device that is there and not muted / turned off).
    return {audio, video, audioEnabled, videoEnabled,
      sendingAudio: audio && audioEnabled, sendingVideo: video && videoEnabled};
  }

  /**
   * The local preview as a tile like the others (muted, mirrored by video.css `.rtc-self`): caption `labels.you`,
   * initials of `name` when the camera is off or missing, the muted and speaking flags. Made once.
   */
  previewTile(participant, name) {
    if (!this.preview) {
      this.me = participant === null || participant === undefined ? null : String(participant);
      const tile = new Tile(this.me ?? 'self', this.labels.you, {stream: this.localStream, labels: this.labels});
      tile.video.muted = true; // never play one's own microphone back
      tile.element.classList.add('rtc-self');
      delete tile.element.dataset.participant; // not a remote participant: autoPause and stats leave it alone
      this.preview = tile;
    }
    this.preview.setName(this.labels.you, '', name || '');
    this._showPreview();
    return this.preview.element;
  }

  attachPreview(video) {
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.srcObject = this.localStream;
    return video;
  }

  // -- connection -------------------------------------------------------------------------------------------
  /** Create a peer connection and send its offer (again after a broken path: a fresh one each time). */
  async connect() {
    if (this._closed) throw new Error('this media session is closed; make a new one');
    clearTimeout(this._retryTimer);
    this._teardownPeer();
    // A fresh member on the server: what it pauses is read again from its media.slots (and asked again if need be).
    this._asked.clear();
    this._slotPaused.clear();
    this._setState(this._attempt ? 'reconnecting' : 'connecting');
    const pc = new RTCPeerConnection({iceServers: this.iceServers, bundlePolicy: 'max-bundle'});
    this.pc = pc;
    this._answered = false;
    this._pendingIce = [];
    this._senders = {
      audio: pc.addTransceiver('audio', {direction: 'sendonly'}),
      video: pc.addTransceiver('video', {direction: 'sendonly'}),
    };
    preferCodecs(this._senders.audio, 'audio');
    preferCodecs(this._senders.video, 'video');
    for (let i = 0; i < this.slots; i += 1) {
      preferCodecs(pc.addTransceiver('audio', {direction: 'recvonly'}), 'audio');
      preferCodecs(pc.addTransceiver('video', {direction: 'recvonly'}), 'video');
    }
    for (const [label, options] of Object.entries(CHANNELS)) this._openChannel(pc, label, options);
    pc.addEventListener('connectionstatechange', () => this._onConnectionState(pc));
    pc.addEventListener('icecandidate', (event) => {
      if (pc !== this.pc) return;
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      // Candidates found before the answer are already in the offer (see _gathered); later ones trickle.
      if (this._answered) this.signal({type: 'rtc.ice', candidate});
      else if (candidate) this._pendingIce.push(candidate);
    });
    await this._attachLocalTracks();
    await pc.setLocalDescription(await pc.createOffer());
    await this._gathered(pc, 2500);
    if (pc !== this.pc) return;
    this._pendingIce = [];  // they are in the SDP below
    this.signal({type: 'rtc.offer', sdp: pc.localDescription.sdp});
  }

  /** Whether `message` (from the room's WebSocket) is for the media session. */
  handles(message) { return Boolean(message) && SIGNALS.includes(message.type); }

  /** Apply a server message: `rtc.answer` {sdp} or `media.slots` {slots}. */
  async handle(message) {
    if (message.type === 'rtc.answer') {
      const pc = this.pc;
      if (!pc || pc.signalingState !== 'have-local-offer') return;
      await pc.setRemoteDescription({type: 'answer', sdp: message.sdp});
      this._answered = true;
      for (const candidate of this._pendingIce.splice(0)) this.signal({type: 'rtc.ice', candidate});
      this._applySlots();
    } else if (message.type === 'media.slots') {
      this._slotMap = message.slots || [];
      this._applySlots();
    }
  }

  /** Send on `view` or `pointer`; false when that channel is not open (use the WebSocket then). */
  send(channel, data) {
    const dc = this.channels[channel];
    if (!dc || dc.readyState !== 'open' || dc.bufferedAmount > (1 << 20)) return false;
    try { dc.send(data); } catch (err) { return false; }
    return true;
  }

  /** Whether the data-channel path is usable (the room page says which path is in use). */
  get open() { return Boolean(this.channels.view && this.channels.view.readyState === 'open'); }

  // -- remote tiles -----------------------------------------------------------------------------------------
  /** A participant's caption: name and an optional detail line (specialty, hospital). */
  setName(participant, name, detail = '') {
    this.names.set(participant, name);
    this.details.set(participant, detail);
    const tile = this.tiles.get(participant);
    if (tile) tile.setName(name, detail);
  }

  /**
   * Mark the active speaker (the room announces it): their tile gets `rtc-speaking`. The last *other* participant
   * who spoke is `featured` (`rtc-featured`, enlarged by video.css), so the big picture stays on the person one
   * listens to while one speaks oneself; in low-bandwidth mode the featured video is the one still received.
   */
  setSpeaker(participant) {
    this.speaker = participant === null || participant === undefined ? null : String(participant);
    if (this.speaker !== null && this.speaker !== this.me) this.featured = this.speaker;
    for (const [id, tile] of this.tiles) {
      tile.flag('rtc-speaking', id === this.speaker);
      tile.flag('rtc-featured', id === this.featured);
    }
    if (this.preview) this.preview.flag('rtc-speaking', this.me !== null && this.speaker === this.me);
    for (const id of this.tiles.keys()) this._askPause(id);
  }

  /** Low-bandwidth mode: receive only the featured participant's video; everybody's audio keeps flowing. */
  setLowBandwidth(on) {
    this.lowBandwidth = Boolean(on);
    for (const id of this.tiles.keys()) this._askPause(id);
  }

  /** Room events: {audioMuted, videoOff} for a participant (shown on their tile). */
  setRemoteState(participant, {audioMuted, videoOff} = {}) {
    const tile = this.tiles.get(participant);
    if (!tile) return;
    if (audioMuted !== undefined) tile.flag('rtc-muted', audioMuted);
    if (videoOff !== undefined) tile.flag('rtc-video-off', videoOff);
  }

  /**
   * Stop (or resume) receiving a participant's video for a `reason` (a hidden tile, the user...); audio always
   * flows. The video is received again once no reason is left and low-bandwidth mode does not hold it back.
   * Sends {type: 'media.pause', participant, paused} when that changes; the room routes it to
   * RoomMedia.set_paused and answers with `media.slots`.
   */
  pause(participant, paused = true, reason = 'page') {
    const id = String(participant);
    const reasons = this._pauses.get(id) || new Set();
    if (paused) reasons.add(reason);
    else reasons.delete(reason);
    if (reasons.size) this._pauses.set(id, reasons);
    else this._pauses.delete(id);
    this._askPause(id);
  }

  /**
   * Pause the videos of tiles that are not on screen (scrolled away, collapsed strip) and resume them when they
   * come back. Returns a function that stops watching.
   */
  autoPause(root = null) {
    if (typeof IntersectionObserver !== 'function') return () => {};
    const visible = new Map();
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const participant = entry.target.dataset.participant;
        const shown = entry.isIntersecting;
        if (visible.get(participant) !== shown) {
          visible.set(participant, shown);
          this.pause(participant, !shown, 'hidden');
        }
      }
    }, {root, threshold: 0});
    for (const tile of this.tiles.values()) observer.observe(tile.element);
    const onTile = (event) => observer.observe(event.detail.element);
    const onRemoved = (event) => {
      observer.unobserve(event.detail.element);
      visible.delete(event.detail.participant);
      this.pause(event.detail.participant, false, 'hidden');
    };
    this.addEventListener('tile', onTile);
    this.addEventListener('tile-removed', onRemoved);
    return () => {
      observer.disconnect();
      this.removeEventListener('tile', onTile);
      this.removeEventListener('tile-removed', onRemoved);
    };
  }

  /** Per-participant inbound statistics (framesDecoded, totalAudioEnergy...) keyed by participant id. */
  async stats() {
    const result = {};
    if (!this.pc) return result;
    const byMid = new Map(this._slotMap.filter((s) => s.participant).map((s) => [String(s.mid), s]));
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type !== 'inbound-rtp' || !byMid.has(String(entry.mid))) return;
      const slot = byMid.get(String(entry.mid));
      const row = result[slot.participant] || (result[slot.participant] = {});
      if (entry.kind === 'video') {
        Object.assign(row, {framesDecoded: entry.framesDecoded || 0, framesPerSecond: entry.framesPerSecond || 0,
          frameWidth: entry.frameWidth || 0, decoderImplementation: entry.decoderImplementation || ''});
      } else {
        Object.assign(row, {audioLevel: entry.audioLevel || 0, totalAudioEnergy: entry.totalAudioEnergy || 0,
          audioPackets: entry.packetsReceived || 0});
      }
    });
    return result;
  }

  /** Leave: stop the devices, close the connection and tell the server. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._disconnectTimer);
    this._teardownPeer();
    for (const track of this.localStream.getTracks()) track.stop();
    for (const tile of this.tiles.values()) this._emit('tile-removed', {participant: tile.participant, element: tile.element});
    this.tiles.clear();
    try { this.signal({type: 'rtc.close'}); } catch (err) { /* the socket may be gone already */ }
    this._setState('closed');
  }

  // -- internals --------------------------------------------------------------------------------------------
  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, {detail})); }

  _showPreview() {
    if (!this.preview) return;
    const local = this.local;
    this.preview.flag('rtc-no-video', !local.sendingVideo);
    this.preview.flag('rtc-muted', !local.sendingAudio);
    this.preview.play();
  }

  _wantsPaused(id) {
    return this._pauses.has(id) || (this.lowBandwidth && id !== this.featured);
  }

  /**
   * Ask the server once for the pause state this page wants for `id`'s video: not again while the answer is
   * pending (no loop with a server that keeps its own view), nor when its last `media.slots` already says so.
   */
  _askPause(id) {
    const want = this._wantsPaused(id);
    if (this._asked.has(id) ? this._asked.get(id) === want : (this._slotPaused.get(id) ?? false) === want) return;
    this._asked.set(id, want);
    this.signal({type: 'media.pause', participant: wireId(id), paused: want});
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const tile of this.tiles.values()) tile.flag('rtc-reconnecting', state === 'reconnecting');
    if (this.preview) this.preview.flag('rtc-reconnecting', state === 'reconnecting');
    this._emit('state', {state});
  }

  async _attachLocalTracks() {
    if (!this.pc || !this._senders.audio) return;
    for (const kind of ['audio', 'video']) {
      const track = this.localStream.getTracks().find((t) => t.kind === kind) || null;
      const sender = this._senders[kind].sender;
      if (sender.track !== track) await sender.replaceTrack(track);
    }
  }

  _openChannel(pc, label, options) {
    const channel = pc.createDataChannel(label, options);
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('message', (event) => {
      if (pc === this.pc) this._emit('message', {channel: label, data: event.data});
    });
    channel.addEventListener('open', () => { if (pc === this.pc) this._emit('channel', {channel: label, open: true}); });
    channel.addEventListener('close', () => { if (pc === this.pc) this._emit('channel', {channel: label, open: false}); });
    this.channels[label] = channel;
  }

  _gathered(pc, limitMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const timer = setTimeout(done, limitMs);
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  _onConnectionState(pc) {
    if (pc !== this.pc || this._closed) return;
    const state = pc.connectionState;
    clearTimeout(this._disconnectTimer);
    if (state === 'connected') {
      this._attempt = 0;
      this._setState('connected');
    } else if (state === 'disconnected') {
      // Often transient (a lost packet burst); give ICE a few seconds before starting over.
      this._setState('reconnecting');
      this._disconnectTimer = setTimeout(() => this._retry(), 3000);
    } else if (state === 'failed') {
      this._retry();
    }
  }

  /** Start over with a fresh peer connection after a growing delay (1, 2, 4, 8, then every 10 s). */
  _retry() {
    if (this._closed) return;
    this._setState('reconnecting');
    const delay = Math.min(10000, 1000 * (2 ** this._attempt));
    this._attempt += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this.connect().catch((err) => {
      this._emit('error', {message: `Reconnecting the media failed (${err}); trying again.`});
      this._retry();
    }), delay);
  }

  _teardownPeer() {
    const pc = this.pc;
    this.pc = null;
    this.channels = {};
    if (pc) {
      try { pc.close(); } catch (err) { /* already closed */ }
    }
  }

  _tile(participant) {
    let tile = this.tiles.get(participant);
    if (!tile) {
      tile = new Tile(participant, this.names.get(participant), {labels: this.labels});
      tile.setName(this.names.get(participant) || participant, this.details.get(participant) || '');
      tile.flag('rtc-reconnecting', this.state === 'reconnecting');
      tile.flag('rtc-speaking', participant === this.speaker);
      tile.flag('rtc-featured', participant === this.featured);
      this.tiles.set(participant, tile);
      this._emit('tile', {participant, element: tile.element});
    }
    return tile;
  }

  /** Point each participant's tile at the receiver tracks of the slots that show them. */
  _applySlots() {
    if (!this.pc || !this._answered) return;
    const transceivers = new Map(this.pc.getTransceivers().filter((t) => t.mid !== null).map((t) => [String(t.mid), t]));
    const seen = new Set();
    for (const slot of this._slotMap) {
      if (!slot.participant) continue;
      const transceiver = transceivers.get(String(slot.mid));
      if (!transceiver) continue;
      seen.add(slot.participant);
      const tile = this._tile(slot.participant);
      tile.show(slot.kind, transceiver.receiver.track);
      if (slot.kind === 'video') {
        tile.flag('rtc-paused', slot.paused);
        this._slotPaused.set(slot.participant, Boolean(slot.paused));
        if (this._asked.get(slot.participant) === Boolean(slot.paused)) this._asked.delete(slot.participant); // done
        this._askPause(slot.participant);
      }
    }
    for (const [participant, tile] of this.tiles) {
      if (seen.has(participant)) continue;
      this.tiles.delete(participant);
      if (this.featured === participant) this.featured = null;
      this._slotPaused.delete(participant);
      this._asked.delete(participant);
      tile.stream.getTracks().forEach((t) => tile.stream.removeTrack(t));
      this._emit('tile-removed', {participant, element: tile.element});
    }
  }
}
