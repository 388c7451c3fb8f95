/**
 * The room's transport: a WebSocket to /ws/meetings/{id} that reconnects and resumes, and, when the server
 * offers WebRTC, the data channels of the page's media session (rtc.js `MediaSession`: one RTCPeerConnection for
 * audio, video and the `view` (reliable, ordered) / `pointer` (unordered, no retransmits) channels) that carry
 * the same messages. The WebSocket carries the signalling (rtc.offer / rtc.answer / rtc.ice / media.slots). Whatever path a message takes, room events are handed to
 * `onEvent` exactly once and in `seq` order (a snapshot resets the order); the path in use is reported to
 * `onPath('dc'|'ws')` and to the server (`{"type": "path"}`) so the participants list shows it. The active
 * speaker (the `speaker` control frame, and `speaker` in the welcome) goes to `onSpeaker(userId|null)`: it is not
 * a room event (frequent and transient), so it has no `seq`.
 *
 * Why a heartbeat of its own (issue 15, item 4): when the network goes away without a word (a cable, a Wi-Fi
 * that drops, a proxy that stops forwarding), the browser keeps the socket "open" for a long time and fires no
 * event. So the page pings the server every HEARTBEAT_MS over the socket (`{"type": "ping", "t": n}`, answered
 * at once with `pong`); when nothing at all has come from the server for SILENCE_MS it says `reconnecting` at
 * once (`onStatus`). If the socket speaks again soon (a blip, a server busy for a moment) it is `open` again,
 * with nothing to renegotiate; after GIVE_UP_MS of silence (the server has dropped us by then:
 * rcp/room/connection.py heartbeat_timeout_s) the page drops that socket and opens a new one, which resumes where
 * the page was. A new socket that does not say `welcome` within OPEN_MS is dropped and tried again (a
 * black-holed network accepts nothing).
 * bench/room_status.py measures the detection (outage_detect_ms_p95).
 *
 * Why resume instead of reload: a clinician whose link drops (Wi-Fi to 4G) must come back to where the meeting
 * is, in place. The socket reconnects with `?last_seq=n`; the server replies with the missed events (or a
 * snapshot if too much was missed).
 *
 * Example:
 *   const socket = new RoomSocket(12, {onSnapshot, onEvent, onPointer, onError, onStatus, onPath, onWelcome, onSpeaker});
 *   socket.useMedia(new MediaSession({signal: (msg) => socket.sendWs(msg)}));  // optional
 *   socket.start();
 *   socket.send({type: 'floor.request'});
 */

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
/** The page's heartbeat: a ping this often, and this much silence from the server means the link is lost. */
export const HEARTBEAT_MS = 400;
export const SILENCE_MS = 1400;
export const GIVE_UP_MS = 3500;
/** A socket that has not said `welcome` this long after opening is given up (and tried again). */
export const OPEN_MS = 8000;
const CHECK_MS = 100;

export class RoomSocket {
  constructor(meetingId, handlers = {}) {
    this.meetingId = meetingId;
    this.h = handlers;
    this.media = null;
    this.seq = null; // last applied sequence number (null: nothing yet, a snapshot is needed)
    this.ahead = new Map(); // events received early (other path), waiting for their turn
    this.ws = null;
    this.path = 'ws';
    this.attempt = 0;
    this.gapTimer = 0;
    this.stopped = false;
    this.welcome = null;
    this.state = 'connecting';
    this.heardAt = 0; // performance.now() of the last frame from the server on the current socket
    this.pingAt = 0;
    this.pings = 0;
    this.checkedAt = 0;
    this.openedAt = 0;
    this.live = false; // the current socket said welcome
    this.stale = false; // ... and has been silent for SILENCE_MS: the page says "reconnecting"
    this.heartbeat = 0;
    this.retryTimer = 0;
    /** Date.now() when the page last noticed it had lost the server by its heartbeat (bench/room_status.py). */
    this.lostAt = null;
  }

  /** Use a MediaSession (rtc.js) for the data-channel path; its signalling goes over this socket. */
  useMedia(media) {
    this.media = media;
    media.addEventListener('message', (e) => {
      const data = typeof e.detail.data === 'string' ? e.detail.data : new TextDecoder().decode(e.detail.data);
      this.receive(data, 'dc');
    });
    media.addEventListener('channel', (e) => {
      if (e.detail.channel === 'view') this.setPath(e.detail.open ? 'dc' : 'ws');
    });
  }

  start() {
    this.stopped = false;
    if (!this.heartbeat) this.heartbeat = setInterval(() => this.beat(), CHECK_MS);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    this.heartbeat = 0;
    if (this.media) this.media.close?.();
    if (this.ws) this.ws.close(1000, 'left');
  }

  connect() {
    this.retryTimer = 0;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const query = this.seq === null ? '' : `?last_seq=${this.seq}`;
    const ws = new WebSocket(`${scheme}://${location.host}/ws/meetings/${this.meetingId}${query}`);
    this.ws = ws;
    this.openedAt = performance.now();
    this.heardAt = 0;
    this.live = false;
    this.stale = false;
    // After a loss the page keeps saying "reconnecting" until a new socket is welcomed; only the first
    // connection says "connecting".
    if (this.state !== 'reconnecting') this.status('connecting');
    ws.onmessage = (e) => {
      if (this.ws !== ws) return; // a socket given up on that speaks again (the network came back): not ours
      this.heardAt = performance.now();
      if (this.stale) {
        this.stale = false; // it was a blip: the same socket speaks again
        this.status('open');
      }
      this.receive(e.data, 'ws');
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      // 4401/4403/4404: not allowed in this room — retrying will not help; 4409: replaced by another tab
      // ("superseded") or the meeting is closed (the error frame before the close said which).
      if (this.stopped || [4401, 4403, 4404, 4409].includes(e.code)) {
        this.ws = null;
        this.setPath('ws');
        this.status(e.code === 4409 && e.reason === 'superseded' ? 'superseded' : 'closed', e.code);
        return;
      }
      this.lost();
    };
  }

  /** Every CHECK_MS: ping while welcomed; say when it went silent, give up a socket silent too long or never
   * welcomed. */
  beat() {
    const now = performance.now();
    const late = this.checkedAt && now - this.checkedAt > 5 * CHECK_MS;
    this.checkedAt = now;
    const ws = this.ws;
    if (this.stopped || !ws || this.retryTimer) return;
    // The page itself was frozen (a long task, a throttled background tab): the silence may be ours, not the
    // network's; the frames waiting behind the freeze are read first, the next check decides.
    if (late) return;
    if (this.live && ws.readyState === WebSocket.OPEN) {
      if (now - this.pingAt >= HEARTBEAT_MS) {
        this.pingAt = now;
        this.pings += 1;
        ws.send(JSON.stringify({type: 'ping', t: this.pings}));
      }
      const silence = now - this.heardAt;
      if (silence > GIVE_UP_MS) {
        this.lost();
      } else if (silence > SILENCE_MS && !this.stale) {
        this.stale = true;
        this.lostAt = Date.now();
        this.status('reconnecting');
      }
    } else if (!this.live && now - this.openedAt > OPEN_MS) {
      this.lost(); // never welcomed: the handshake went into a black hole
    }
  }

  /** The current socket is gone or given up: say so at once, then try again after a backoff. */
  lost() {
    const ws = this.ws;
    this.ws = null;
    this.live = false;
    this.stale = false;
    if (ws) {
      ws.onmessage = null;
      try {
        ws.close(4000, 'heartbeat lost');
      } catch {
        // already closing
      }
    }
    this.setPath('ws');
    this.status('reconnecting');
    if (this.stopped || this.retryTimer) return;
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  status(state, code) {
    this.state = state;
    this.statusAt = Date.now(); // when the page last changed what it says (bench/room_status.py)
    if (this.h.onStatus) this.h.onStatus(state, code);
  }

  setPath(path) {
    if (this.path === path) return;
    this.path = path;
    if (this.h.onPath) this.h.onPath(path);
    this.sendWs({type: 'path', path});
  }

  receive(raw, via) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (this.media && this.media.handles(msg)) {
      this.media.handle(msg).catch((err) => console.warn('media signalling failed', err));
      return;
    }
    switch (msg.type) {
      case 'ping':
        this.sendWs({type: 'pong'});
        break;
      case 'pong':
        break; // the answer to our heartbeat: hearing it (any frame) is what counts
      case 'welcome':
        this.welcome = msg;
        this.live = true;
        this.attempt = 0;
        this.status('open');
        if (this.h.onWelcome) this.h.onWelcome(msg);
        if ('speaker' in msg) this.h.onSpeaker?.(msg.speaker ?? null);
        // STUN/TURN from the server's settings (hospital networks), then a fresh peer for every (re)connection:
        // the server's connection is new, so is its media member.
        if (this.media && Array.isArray(msg.ice_servers)) this.media.iceServers = msg.ice_servers;
        if (msg.rtc && this.media) this.media.connect().catch((err) => console.warn('WebRTC unavailable', err));
        break;
      case 'snapshot':
        this.seq = msg.state.seq;
        this.ahead.clear();
        this.h.onSnapshot?.(msg.state, msg.pointer ?? []);
        this.drain();
        break;
      case 'resumed':
        this.drain();
        break;
      case 'event':
        this.event(msg);
        break;
      case 'pointer':
        this.h.onPointer?.(msg.s);
        break;
      case 'speaker':
        this.h.onSpeaker?.(msg.user_id ?? null);
        break;
      case 'error':
        this.h.onError?.(msg);
        break;
      default:
        this.h.onOther?.(msg, via);
    }
  }

  event(msg) {
    if (this.seq === null || msg.seq <= this.seq) return; // before the snapshot, or a duplicate from the other path
    if (msg.seq > this.seq + 1) {
      this.ahead.set(msg.seq, msg);
      // A hole that does not fill (a data channel closed with events in flight): ask the server again.
      if (this.ahead.size > 200) this.resync();
      else if (!this.gapTimer) this.gapTimer = setTimeout(() => { this.gapTimer = 0; if (this.ahead.size) this.resync(); }, 1000);
      return;
    }
    this.apply(msg);
    this.drain();
  }

  apply(msg) {
    this.seq = msg.seq;
    this.h.onEvent?.(msg);
  }

  drain() {
    for (const seq of [...this.ahead.keys()].sort((a, b) => a - b)) {
      if (seq <= this.seq) this.ahead.delete(seq);
    }
    while (this.ahead.has(this.seq + 1)) {
      const next = this.ahead.get(this.seq + 1);
      this.ahead.delete(this.seq + 1);
      this.apply(next);
    }
  }

  resync() {
    this.ahead.clear();
    this.sendWs({type: 'resume', last_seq: this.seq ?? 0});
  }

  sendWs(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  /** Commands go by the `view` channel when it is open (same handler on the server), else the WebSocket. */
  send(msg) {
    const channel = msg.type === 'pointer' ? 'pointer' : 'view';
    if (this.media && this.media.open && this.media.send(channel, JSON.stringify(msg))) return true;
    return this.sendWs(msg);
  }
}
