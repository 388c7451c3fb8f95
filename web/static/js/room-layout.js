/**
 * The room page's layout (room.html, room.css): the panel tabs, the drawer they open on small screens, the
 * patient identity banner of the current case, the keyboard-shortcut list and the room's one-key shortcuts.
 *
 * Why a module of its own: room.js applies the room's events; this one only arranges what is on screen, so that
 * the images stay first at every size (issue 15): on a wide screen the tabs show their panel under the cameras;
 * under 60rem (an 800x600 laptop, a small tablet) the panel opens as a drawer over the images and closes with
 * Esc, its tab again, its × or a click on the images.
 *
 * Tabs follow the WAI-ARIA Authoring Practices "Tabs" pattern: one tab in the Tab order (roving tabindex), arrow
 * keys and Home/End move between tabs. Room keys (`?`, `V`, `A`, `C`, `D`, `P`, and those room.js adds) work
 * anywhere except while typing in a field; keys the viewer used (it calls preventDefault) are left to it, so an
 * image key never also moves a panel.
 *
 * Example (room.js):
 *   const layout = new RoomLayout(root, {viewer: root.querySelector('[data-rcp-viewer]'),
 *     keys: {m: () => conference?.act('mic'), g: grantFirst}});
 *   layout.showCase(room.caseId);   // the identity banner and the empty panels follow the current case
 *   layout.suggest('decision');     // selected unless the user chose a tab (never opens the drawer)
 *   layout.showTab('decision');     // select (and on a small screen open) a panel
 */

const SMALL = '(max-width: 60rem)';
const TAB_KEYS = {a: 'agenda', c: 'case', d: 'decision', p: 'people'};

/** Whether a key event comes from somewhere the user types text (the key is theirs, not a shortcut). */
function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && !['button', 'checkbox', 'radio', 'submit', 'reset'].includes(target.type);
}

export class RoomLayout {
  /**
   * @param {HTMLElement} root  the `[data-room]` element
   * @param {object} options
   * @param {HTMLElement} options.viewer  the viewer's element (focused by `V`)
   * @param {Object<string, () => void>} [options.keys]  more one-key shortcuts (lower-case key -> action;
   *   `escape`: Esc when no drawer is open)
   */
  constructor(root, {viewer, keys = {}}) {
    this.root = root;
    this.viewer = viewer;
    this.keys = keys;
    this.small = window.matchMedia(SMALL);
    this.tabs = [...root.querySelectorAll('[role="tab"][data-tab]')];
    this.help = root.querySelector('[data-room-help]');

    this.chosen = false; // the user picked a tab: the room no longer suggests one
    for (const tab of this.tabs) tab.addEventListener('click', () => this.onTabClick(tab.dataset.tab));
    root.querySelector('[role="tablist"]').addEventListener('keydown', (e) => this.onTabKey(e));
    root.addEventListener('click', (e) => {
      const action = e.target.closest('[data-room-action]')?.dataset.roomAction;
      if (action === 'close-drawer') this.closeDrawer(true);
      else if (action === 'help') this.toggleHelp();
      else if (action === 'help-close') this.help.close();
    });
    // A click on the images puts the drawer away: the images come first.
    root.querySelector('.room-stage').addEventListener('pointerdown', () => this.closeDrawer(false));
    document.addEventListener('keydown', (e) => this.onKey(e));
    this.small.addEventListener('change', () => this.closeDrawer(false));
  }

  /** The tab shown (agenda, case, decision, people). */
  get tab() {
    return this.root.dataset.shownTab;
  }

  get drawerOpen() {
    return this.root.dataset.drawer === 'open';
  }

  /** Select a panel; on a small screen open it as a drawer (and put the focus in it when `focus`). */
  showTab(name, {focus = false, open = true} = {}) {
    this.root.dataset.shownTab = name;
    for (const tab of this.tabs) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    for (const panel of this.root.querySelectorAll('[data-tabpanel]')) panel.hidden = panel.dataset.tabpanel !== name;
    if (open) this.root.dataset.drawer = 'open';
    if (focus) this.root.querySelector(`[data-tabpanel="${name}"]`).focus({preventScroll: true});
  }

  /**
   * The panel the meeting's moment calls for (the decision while a case is discussed, the agenda otherwise),
   * selected until the user picks a tab themselves; a drawer is never opened for it (the images come first).
   */
  suggest(name) {
    if (!this.chosen && name !== this.tab) this.showTab(name, {open: false});
  }

  /** Close the drawer (small screens); `refocus` gives the focus back to its tab. */
  closeDrawer(refocus) {
    if (!this.drawerOpen) return;
    this.root.dataset.drawer = 'closed';
    if (refocus) this.tabs.find((t) => t.dataset.tab === this.tab)?.focus();
  }

  onTabClick(name) {
    this.chosen = true;
    if (this.small.matches && this.drawerOpen && this.tab === name) this.closeDrawer(false);
    else this.showTab(name);
  }

  onTabKey(e) {
    const i = this.tabs.indexOf(e.target.closest('[role="tab"]'));
    if (i < 0) return;
    const n = this.tabs.length;
    const to = {ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: n - 1}[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const tab = this.tabs[(to + n) % n];
    this.chosen = true;
    this.showTab(tab.dataset.tab, {open: this.drawerOpen});
    tab.focus();
  }

  toggleHelp() {
    if (this.help.open) this.help.close();
    else this.help.showModal();
  }

  onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key === '?') {
      e.preventDefault();
      this.toggleHelp();
      return;
    }
    if (this.help.open) return; // the list is modal: Esc (the dialog's own) closes it
    if (e.key === 'Escape') {
      if (this.drawerOpen) this.closeDrawer(true);
      else this.keys.escape?.();
      return;
    }
    const key = e.key.length === 1 ? e.key.toLowerCase() : '';
    if (!key) return;
    let action = null;
    if (key === 'v') action = () => this.viewer.focus();
    else if (TAB_KEYS[key]) {
      action = () => {
        this.chosen = true;
        this.showTab(TAB_KEYS[key], {focus: true});
      };
    }
    else if (this.keys[key]) action = this.keys[key];
    if (!action) return;
    e.preventDefault();
    action();
  }

  /**
   * The current case (or null): its patient's identity banner beside the images (RNIV traits and status,
   * rendered by room.html), and the "no case" lines of the panels.
   */
  showCase(caseId) {
    let shown = false;
    for (const line of this.root.querySelectorAll('[data-identity-case]')) {
      line.hidden = Number(line.dataset.identityCase) !== caseId;
      shown ||= !line.hidden;
    }
    this.root.querySelector('[data-identity-none]').hidden = shown;
    this.root.querySelector('[data-decision-none]').hidden = caseId !== null && caseId !== undefined;
  }
}
