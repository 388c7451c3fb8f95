/**
 * Follow mode that holds (issue 15, item 5): while a participant follows the presenter, their own navigation
 * (wheel, arrow keys, drags, toolbar presets, cine) is refused with a hint over the images — "You are following
 * Dr X — press F to browse freely" — instead of moving their screen away while the room still lists them as
 * following (and snapping back at the presenter's next move). F (anywhere on the page but a text field) switches
 * between following and browsing; the switch goes to the room (`{"type": "mode"}`) and the screen changes when
 * the room's `participant.mode` comes back, so what the room shows about them is what their screen shows. While
 * browsing, a note over the images says so and how to come back.
 *
 * What a follower may still do on their own screen: choose the active viewport and measure (measurements stay
 * this screen's, see room.js); everything the shared view holds is the presenter's.
 *
 * Example (room.js):
 *   const guard = new FollowGuard(root, viewer, {labels: L.follow, following, presenting,
 *     presenterName: () => 'Dr Martin', setMode: (mode) => socket.send({type: 'mode', mode})});
 *   guard.render();   // after each room event: shows or hides the browsing note
 */

/** User changes a follower keeps on their own screen (viewer.js reasons). */
const LOCAL = new Set(['active', 'measure']);
const HINT_MS = 4000;

export class FollowGuard {
  constructor(root, viewer, {labels, following, presenting, presenterName, setMode}) {
    this.root = root;
    this.viewer = viewer;
    this.labels = labels;
    this.following = following;
    this.presenting = presenting;
    this.presenterName = presenterName;
    this.setMode = setMode;
    this.refusedAt = 0;
    this.timer = 0;
    /** How many user changes were refused (for the tests: a refusal is a positive signal). */
    this.refused = 0;
    this.hint = document.createElement('p');
    this.hint.className = 'room-follow-hint';
    this.hint.setAttribute('role', 'status');
    this.hint.setAttribute('aria-live', 'polite');
    this.hint.dataset.followHint = '';
    this.hint.hidden = true;
    viewer.element.append(this.hint);
    viewer.setGate((reason) => this.allows(reason));
    this.onKey = (e) => this.key(e);
    window.addEventListener('keydown', this.onKey, true);
  }

  /** The viewer's gate: a follower's navigation is refused, and told why. */
  allows(reason) {
    if (LOCAL.has(reason) || reason === 'load' || !this.following()) return true;
    this.refused += 1;
    if (this.viewer.cine.playing) this.viewer.setCine(false);
    this.refusedAt = performance.now();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.render(), HINT_MS);
    this.render();
    return false;
  }

  /** F switches following ↔ browsing for anyone but the presenter (whose F stays the viewer's "fit"). */
  key(e) {
    if (e.key !== 'f' && e.key !== 'F') return;
    if (e.altKey || e.ctrlKey || e.metaKey || e.repeat || this.presenting()) return;
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement ||
        (t instanceof HTMLElement && t.isContentEditable)) return;
    e.preventDefault();
    e.stopPropagation();
    this.refusedAt = 0;
    this.setMode(this.following() ? 'free' : 'follow');
  }

  /** The hint after a refusal (for HINT_MS), or the note while browsing; nothing otherwise. */
  render() {
    const name = this.presenterName();
    const fill = (text) => text.replace('%(name)s', name ?? '');
    let kind = '';
    let text = '';
    if (this.presenting()) {
      kind = '';
    } else if (this.following()) {
      if (this.refusedAt && performance.now() - this.refusedAt < HINT_MS) {
        kind = 'following';
        text = name ? fill(this.labels.hint) : this.labels.hint_nobody;
      }
    } else {
      kind = 'browsing';
      text = name ? fill(this.labels.browsing) : this.labels.browsing_nobody;
    }
    this.hint.hidden = !kind;
    this.hint.dataset.followHint = kind;
    if (this.hint.textContent !== text) this.hint.textContent = text;
  }
}
