/**
 * Floor requests as the chair sees them: a notification over the page (fixed at the top, wherever the chair has
 * scrolled or whichever panel is open) per participant asking for the floor, with a button that gives it in one
 * click, and an optional sound (off until the chair turns it on; remembered in this browser).
 *
 * Why: the "asks for the floor" badge alone sat in the participants list, below the fold at 1280x720, and the
 * chair missed requests (issue 15, item 6). The room's reducer still decides: the button only sends
 * `floor.handover`, the notification goes when the request leaves `floor_requests` (granted, withdrawn, gone).
 *
 * The sound is two short tones made with the Web Audio API (no file to fetch); browsers start audio only after a
 * user gesture, so the context is created by the click that turns the sound on.
 *
 * Example (room.js):
 *   const alerts = new FloorAlerts(root.querySelector('[data-floor-alerts]'), {
 *     labels: {asks: L.asks_floor, give: 'Give the floor', dismiss: 'Dismiss'},
 *     soundButton: root.querySelector('[data-room-action="floor-sound"]'),
 *     give: (userId) => socket.send({type: 'floor.handover', to: userId})});
 *   alerts.show([{user_id: 7, name: 'Dr Paul MARTIN'}], {chair: true});  // from every render
 *   alerts.ring();                                                        // on a new floor.requested
 */

const SOUND_KEY = 'rcp.floor-sound';

export class FloorAlerts {
  constructor(box, {labels, soundButton, give}) {
    this.box = box;
    this.L = labels;
    this.soundButton = soundButton;
    this.give = give;
    this.dismissed = new Set();
    this.audio = null;
    this.chair = false;
    /** How many times the tones played (for the tests: a positive signal that the sound went off). */
    this.rung = 0;
    this.sound = localStorage.getItem(SOUND_KEY) === 'on';
    this.showSound();
    soundButton.addEventListener('click', () => this.toggleSound());
    box.addEventListener('click', (e) => {
      const button = e.target.closest('button[data-floor]');
      if (!button) return;
      const userId = Number(button.closest('[data-floor-request]').dataset.floorRequest);
      if (button.dataset.floor === 'give') this.give(userId);
      else this.dismiss(userId);
    });
    box.addEventListener('keydown', (e) => {
      const item = e.target.closest('[data-floor-request]');
      if (e.key === 'Escape' && item) this.dismiss(Number(item.dataset.floorRequest));
    });
  }

  /** The pending requests, oldest first ({user_id, name}); shown only to the chair. */
  show(requests, {chair}) {
    this.chair = chair;
    this.soundButton.hidden = !chair;
    const pending = new Set(requests.map((r) => r.user_id));
    for (const id of this.dismissed) if (!pending.has(id)) this.dismissed.delete(id);
    const wanted = chair ? requests.filter((r) => !this.dismissed.has(r.user_id)) : [];
    const items = new Map([...this.box.querySelectorAll('[data-floor-request]')]
      .map((item) => [Number(item.dataset.floorRequest), item]));
    for (const [id, item] of items) if (!wanted.some((r) => r.user_id === id)) item.remove();
    for (const r of wanted) {
      const text = `${r.name} ${this.L.asks}`;
      const item = items.get(r.user_id);
      if (item) {
        item.querySelector('[data-floor-text]').textContent = text;
        continue;
      }
      this.box.append(this.item(r.user_id, text));
    }
  }

  item(userId, text) {
    const item = document.createElement('div');
    item.className = 'room-floor-alert';
    item.setAttribute('role', 'alert');
    item.dataset.floorRequest = String(userId);
    const words = document.createElement('span');
    words.dataset.floorText = '';
    words.textContent = text;
    const give = document.createElement('button');
    give.type = 'button';
    give.className = 'btn primary';
    give.dataset.floor = 'give';
    give.textContent = this.L.give;
    const dismiss = document.createElement('button');
    dismiss.type = 'button';
    dismiss.className = 'btn ghost';
    dismiss.dataset.floor = 'dismiss';
    dismiss.setAttribute('aria-label', this.L.dismiss);
    dismiss.title = this.L.dismiss;
    dismiss.textContent = '×';
    item.append(words, give, dismiss);
    return item;
  }

  /** Put one request's notification away (the badge in the participants list stays). */
  dismiss(userId) {
    this.dismissed.add(userId);
    this.box.querySelector(`[data-floor-request="${userId}"]`)?.remove();
  }

  /** Esc from the page: the newest notification goes away. */
  dismissLast() {
    const last = [...this.box.querySelectorAll('[data-floor-request]')].at(-1);
    if (!last) return false;
    this.dismiss(Number(last.dataset.floorRequest));
    return true;
  }

  /** A new request arrived: two short tones, if the chair turned the sound on. */
  ring() {
    if (!this.chair || !this.sound) return;
    const ctx = this.context();
    if (!ctx) return;
    this.rung += 1;
    const start = ctx.currentTime + 0.02;
    [[880, 0], [660, 0.18]].forEach(([hz, at]) => {
      const tone = ctx.createOscillator();
      const gain = ctx.createGain();
      tone.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, start + at);
      gain.gain.exponentialRampToValueAtTime(0.25, start + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.15);
      tone.connect(gain).connect(ctx.destination);
      tone.start(start + at);
      tone.stop(start + at + 0.16);
    });
  }

  context() {
    if (!this.audio && typeof AudioContext === 'function') this.audio = new AudioContext();
    if (this.audio?.state === 'suspended') this.audio.resume().catch(() => {});
    return this.audio;
  }

  toggleSound() {
    this.sound = !this.sound;
    localStorage.setItem(SOUND_KEY, this.sound ? 'on' : 'off');
    this.showSound();
    if (this.sound) this.ring(); // what it will sound like (and the gesture that lets audio start)
  }

  showSound() {
    this.soundButton.setAttribute('aria-pressed', String(this.sound));
  }
}
