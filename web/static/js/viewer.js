/**
 * The imaging viewer: a canvas per viewport showing original pixel values, windowed in the browser.
 *
 * Why: in a tumour board everyone must see the same anatomy at full fidelity, so the server sends modality
 * values (Hounsfield units, not a video) and the browser does window/level, zoom and pan. The whole view is a
 * plain object (see viewer-state.js) so the live room can send it, and `setState` renders any state it is
 * given; user interaction produces a new state and calls the `onChange` listeners. State changes and drawing
 * are separate: `commit(state)` stores data, one `requestAnimationFrame` later `render()` draws it.
 *
 * Example:
 *   import {createViewer} from '/static/js/viewer.js';
 *   const v = createViewer(document.querySelector('[data-rcp-viewer]'));
 *   await v.loadSeries(0, '/api/imaging/studies/1.2/series/1.2.3');
 *   v.onChange((state) => room.send({type: 'view', state}));
 *   await v.setState(stateFromPresenter);
 *   v.addOverlay((ctx, view) => { const p = view.imageToScreen(120.5, 88.5); ctx.fillRect(p.x, p.y, 4, 4); });
 */

import {FramePool} from './frames.js';
import {
  imageTransform, screenToImage as toImage, imageToScreen as toScreen, pixelAspect, zoomAbout, clampZoom,
  slicePosition,
} from './viewer-geometry.js';
import {Painter, PRESETS, defaultWindow} from './viewer-lut.js';
import {
  LAYOUTS, VIEWPORTS, clampIndex, cloneState, emptyViewport, initialState, normalizeState, setLayout, visibleCount,
  withViewport,
} from './viewer-state.js';
import {drawMeasurements, formatLength, overlayText} from './viewer-overlay.js';
import {ViewerInput} from './viewer-input.js';

export {PRESETS, LAYOUTS};

/**
 * The texts the viewer shows, by key. The page gives them translated (viewer_panel.html's data-viewer-labels,
 * rendered with gettext): no English fallback here, so a French page shows no English word (issue 15).
 */
export const DEFAULT_LABELS = Object.freeze({
  series: '', image: '', position: '', instance: '', zoom: '', inverted: '', loading: '', empty: '', value: '',
  network: '', pacs: '', presets: {lung: '', mediastinum: '', abdomen: '', bone: '', brain: ''},
});

export const TOOLS = Object.freeze(['window', 'pan', 'zoom', 'measure', 'scroll']);

/** The series metadata URL of the server contract. */
export function seriesMetaUrl(studyUid, seriesUid) {
  return `/api/imaging/studies/${encodeURIComponent(studyUid)}/series/${encodeURIComponent(seriesUid)}`;
}

/**
 * @param {HTMLElement} element the panel from viewer_panel.html (or any element: the grid goes inside)
 * @param {{fetch?: Function, seriesUrl?: Function, concurrency?: number, budgetBytes?: number,
 *          labels?: object, interpolation?: 'linear'|'nearest'}} options
 */
export function createViewer(element, options = {}) {
  return new Viewer(element, options);
}


export class Viewer {
  constructor(element, options = {}) {
    this.element = element;
    this.options = options;
    this.labels = {...DEFAULT_LABELS, ...labelsFrom(element), ...(options.labels ?? {})};
    this.seriesUrl = options.seriesUrl ?? seriesMetaUrl;
    this.interpolation = options.interpolation ?? 'linear';
    this.pool = new FramePool({fetch: options.fetch, concurrency: options.concurrency ?? 6,
      budgetBytes: options.budgetBytes ?? 1.5e9});
    this.state = initialState();
    this.tool = 'window';
    this.urls = new Map();
    this.subscribed = new Set();
    this.listeners = new Set();
    this.overlays = new Set();
    this.settleWaiters = [];
    this.frameRequested = 0;
    this.drag = null; // the pointer gesture in progress (viewer-input.js)
    this.draft = null; // the length being drawn, shown by renderMarks
    this.wheelRest = 0;
    this.gate = null; // asked before each user-made change (setGate)
    this.cine = {playing: false, fps: 10, last: 0, raf: 0};
    this.cleanup = [];
    this.grid = element.querySelector('[data-viewer-grid]') ?? element;
    this.grid.classList.add('rcp-viewer__grid');
    if (!element.hasAttribute('tabindex')) element.tabIndex = 0;
    this.views = Array.from({length: VIEWPORTS}, (_, i) => this.createView(i));
    this.input = new ViewerInput(this);
    this.resizeObserver = new ResizeObserver(() => this.scheduleRender());
    for (const view of this.views) this.resizeObserver.observe(view.root);
    this.listen(window, 'resize', () => this.scheduleRender());
    this.scheduleRender();
  }

  // ---- public API -------------------------------------------------------------------------------------

  /** A copy of the current state (plain data, safe to send or store). */
  getState() {
    return cloneState(this.state);
  }

  /**
   * Show the given state (from the live room, a saved view...). Missing fields take defaults. Does not call
   * the onChange listeners. Resolves once the displayed slices are drawn or their series reported an error.
   */
  async setState(input) {
    const next = normalizeState(input);
    for (const view of this.views) {
      view.pending = null;
      view.failed = null;
    }
    this.commit(this.resolveDefaults(next), null);
    // settled() also counts a series that reports an error (e.g. "PACS unreachable, retrying") as shown, so
    // a follower is never stuck here while the PACS is down.
    await this.settled();
    return this.getState();
  }

  /**
   * Ask `gate(reason)` before each user-made change ('slice', 'window', 'zoom', 'pan', 'layout', 'invert',
   * 'reset', 'measure', 'active', 'load'); a false answer leaves the state as it is. The live room's follow mode
   * refuses the navigation of a follower this way (room.js, follow.js), so the screen never leaves the shared view
   * silently. `null` removes the gate.
   */
  setGate(gate) {
    this.gate = gate;
  }

  /** Listen to user-made changes: `cb(state, {reason})`. Returns the function that stops listening. */
  onChange(cb) {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /**
   * Open a series (its metadata URL) in viewport i, at `index` (default: first slice), with the series'
   * default window. Resolves with the series metadata, or null if it failed (the viewport shows why).
   */
  async loadSeries(i, url, {index = 0} = {}) {
    const series = this.pool.open(url, {retry: true});
    this.subscribe(series);
    // The viewport now shows this series' loading (or its error), not the one it replaces.
    this.commit(withViewport(this.state, i, emptyViewport()), null);
    this.views[i].pending = series;
    this.views[i].failed = null;
    this.scheduleRender();
    await series.ready;
    if (this.views[i].pending !== series) return series.meta;
    this.views[i].pending = null;
    if (!series.meta) {
      this.views[i].failed = series;
      this.scheduleRender();
      return null;
    }
    this.views[i].failed = null;
    this.urls.set(seriesKey(series.meta.study_uid, series.meta.series_uid), url);
    const vp = {
      studyUid: series.meta.study_uid, seriesUid: series.meta.series_uid, index: clampIndex(index, series.length),
      window: null, zoom: 1, pan: null, invert: false, measurements: [],
    };
    let next = withViewport(this.state, i, vp);
    next = this.resolveDefaults(next);
    this.commit(next, 'load');
    await this.settled();
    return series.meta;
  }

  /** Screen (CSS pixels from viewport i's top-left) to image coordinates (PS3.3 C.10.5.1.2 units). */
  screenToImage(x, y, i = this.state.active) {
    const g = this.geometry(i);
    return g ? toImage(g, this.state.viewports[i], x, y) : null;
  }

  /** Image coordinates (column, row; pixel centres at +0.5) to CSS pixels from viewport i's top-left. */
  imageToScreen(x, y, i = this.state.active) {
    const g = this.geometry(i);
    return g ? toScreen(g, this.state.viewports[i], x, y) : null;
  }

  /** Page (client) coordinates to {viewport, x, y} in image coordinates, or null outside any image. */
  clientToImage(clientX, clientY) {
    for (let i = 0; i < visibleCount(this.state.layout); i++) {
      const r = this.views[i].root.getBoundingClientRect();
      if (clientX >= r.left && clientX < r.right && clientY >= r.top && clientY < r.bottom) {
        const p = this.screenToImage(clientX - r.left, clientY - r.top, i);
        return p ? {viewport: i, x: p.x, y: p.y} : null;
      }
    }
    return null;
  }

  /** Image coordinates of viewport i to page (client) coordinates. */
  imageToClient(x, y, i = this.state.active) {
    const p = this.imageToScreen(x, y, i);
    if (!p) return null;
    const r = this.views[i].root.getBoundingClientRect();
    return {x: r.left + p.x, y: r.top + p.y};
  }

  /**
   * Draw something over every visible viewport, in image coordinates: `draw(ctx, view)` runs after each
   * render with a context in CSS pixels and view = {viewport, state, series, frame, width, height,
   * imageToScreen(x, y), screenToImage(x, y), scale}. Returns the function that removes it.
   */
  addOverlay(draw) {
    this.overlays.add(draw);
    this.redrawOverlays();
    return () => {
      this.overlays.delete(draw);
      this.redrawOverlays();
    };
  }

  /** Redraw only the overlay layer (pointer moves): cheap, the image is not repainted. */
  redrawOverlays() {
    this.scheduleRender(true);
  }

  /** Select the tool of the left button: 'window', 'pan', 'zoom', 'measure' or 'scroll'. */
  setTool(tool) {
    if (!TOOLS.includes(tool)) return;
    this.tool = tool;
    this.element.dataset.tool = tool;
    this.syncToolbar();
  }

  /** Resolves when every visible viewport shows its current slice, or an error for its series. */
  settled() {
    return new Promise((resolve) => {
      this.settleWaiters.push(resolve);
      this.scheduleRender();
    });
  }

  /** Start/stop cine on the active viewport. */
  setCine(playing, fps = this.cine.fps) {
    this.cine.fps = Math.min(60, Math.max(1, Number(fps) || 10));
    if (playing && !this.cine.playing) {
      this.cine.playing = true;
      this.cine.last = performance.now();
      const tick = (now) => {
        if (!this.cine.playing) return;
        this.input.cineStep(now);
        this.cine.raf = requestAnimationFrame(tick);
      };
      this.cine.raf = requestAnimationFrame(tick);
    } else if (!playing) {
      this.cine.playing = false;
      cancelAnimationFrame(this.cine.raf);
    }
    this.syncToolbar();
  }

  /** Stop everything this viewer started. Safe to call twice. */
  destroy() {
    this.setCine(false);
    this.resizeObserver.disconnect();
    for (const off of this.cleanup.splice(0)) off();
    this.pool.close();
    cancelAnimationFrame(this.frameRequested);
    for (const view of this.views) view.root.remove();
  }

  // ---- actions (user interaction -> new state) ----------------------------------------------------------

  setLayout(layout) {
    this.link = null;
    this.commit(setLayout(this.state, layout), 'layout');
  }

  setActive(i) {
    if (i !== this.state.active && i < visibleCount(this.state.layout)) this.commit({...this.state, active: i}, 'active');
  }

  applyPreset(key, i = this.state.active) {
    const preset = PRESETS.find((p) => p.key === key);
    if (preset) this.updateViewport(i, {window: {center: preset.center, width: preset.width}}, 'window');
  }

  scrollBy(delta, i = this.state.active) {
    const series = this.seriesFor(i);
    if (!series || !series.meta) return;
    const vp = this.state.viewports[i];
    const index = clampIndex(vp.index + delta, series.length);
    if (index !== vp.index) this.updateViewport(i, {index}, 'slice');
  }

  scrollTo(index, i = this.state.active) {
    const series = this.seriesFor(i);
    if (!series || !series.meta) return;
    const next = clampIndex(Math.round(index), series.length);
    if (next !== this.state.viewports[i].index) this.updateViewport(i, {index: next}, 'slice');
  }

  zoomBy(factor, i = this.state.active) {
    const g = this.geometry(i);
    if (g) this.updateViewport(i, zoomAbout(g, this.state.viewports[i], factor, g.width / 2, g.height / 2), 'zoom');
  }

  fit(i = this.state.active) {
    const g = this.geometry(i);
    if (g) this.updateViewport(i, {zoom: 1, pan: {x: g.columns / 2, y: g.rows / 2}}, 'zoom');
  }

  invert(i = this.state.active) {
    this.updateViewport(i, {invert: !this.state.viewports[i].invert}, 'invert');
  }

  reset(i = this.state.active) {
    const series = this.seriesFor(i);
    const g = this.geometry(i);
    if (!series || !series.meta || !g) return;
    const vp = this.state.viewports[i];
    const win = defaultWindow(series.frames[vp.index], series.get(vp.index)) ?? vp.window;
    this.updateViewport(i, {window: win, zoom: 1, pan: {x: g.columns / 2, y: g.rows / 2}, invert: false}, 'reset');
  }

  updateViewport(i, patch, reason) {
    let next = withViewport(this.state, i, patch);
    if (reason === 'slice' && this.link) next = this.followLink(next, i);
    this.commit(next, reason);
  }

  /**
   * Link the stacks of the visible viewports: scrolling one moves the others by the same distance in mm along
   * the slice normal (PS3.3 C.7.6.2.1.1), from where each one is now, so a prior and a current study stay on
   * the same anatomy even when the patient lay differently. Without positions, by slice count.
   */
  setLinked(on) {
    this.link = null;
    if (on) {
      const anchors = [];
      for (let j = 0; j < visibleCount(this.state.layout); j++) {
        const series = this.seriesFor(j);
        const index = this.state.viewports[j].index;
        anchors[j] = series && series.meta ? {index, position: slicePosition(series.frames[index])} : null;
      }
      this.link = {anchors};
    }
    this.syncToolbar();
  }

  followLink(state, i) {
    const anchors = this.link.anchors;
    const from = anchors[i];
    const series = this.seriesFor(i, state);
    if (!from || !series || !series.meta) return state;
    const index = state.viewports[i].index;
    const moved = from.position != null ? slicePosition(series.frames[index]) : null;
    let next = state;
    for (let j = 0; j < visibleCount(state.layout); j++) {
      const other = this.seriesFor(j, state);
      const anchor = anchors[j];
      if (j === i || !anchor || !other || !other.meta) continue;
      let target = null;
      if (moved != null && anchor.position != null) {
        const wanted = anchor.position + (moved - from.position);
        let best = Infinity;
        other.frames.forEach((f, k) => {
          const d = Math.abs((slicePosition(f) ?? Infinity) - wanted);
          if (d < best) {
            best = d;
            target = k;
          }
        });
      } else {
        target = clampIndex(anchor.index + (index - from.index), other.length);
      }
      if (target != null && target !== next.viewports[j].index) next = withViewport(next, j, {index: target});
    }
    return next;
  }

  // ---- state plumbing -----------------------------------------------------------------------------------

  /** Store a new state and schedule a render; `reason` set means a user change: tell the listeners. */
  commit(next, reason) {
    if (reason && this.gate && !this.gate(reason)) return;
    this.state = next;
    this.syncToolbar();
    this.scheduleRender();
    if (reason) {
      const snapshot = this.getState();
      for (const cb of this.listeners) {
        try {
          cb(snapshot, {reason});
        } catch (err) {
          console.error('viewer onChange listener failed', err);
        }
      }
    }
  }

  /** Fill what a state leaves to the series (default window, centred pan, index in range) once known. */
  resolveDefaults(state) {
    let next = state;
    for (let i = 0; i < VIEWPORTS; i++) {
      const vp = next.viewports[i];
      const series = this.seriesFor(i, next);
      if (!series || !series.meta || !series.length) continue;
      const patch = {};
      const index = clampIndex(vp.index, series.length);
      if (index !== vp.index) patch.index = index;
      const frame = series.frames[index];
      if (!vp.window) {
        const w = defaultWindow(frame, series.get(index));
        if (w) patch.window = w;
      }
      if (!vp.pan) patch.pan = {x: frame.columns / 2, y: frame.rows / 2};
      if (Object.keys(patch).length) next = withViewport(next, i, patch);
    }
    return next;
  }

  seriesFor(i, state = this.state) {
    const vp = state.viewports[i];
    if (vp.seriesUid) {
      const key = seriesKey(vp.studyUid, vp.seriesUid);
      const url = this.urls.get(key) ?? this.seriesUrl(vp.studyUid, vp.seriesUid);
      const series = this.pool.open(url);
      this.subscribe(series);
      return series;
    }
    return this.views[i].pending ?? this.views[i].failed ?? null;
  }

  subscribe(series) {
    if (this.subscribed.has(series)) return;
    this.subscribed.add(series);
    const update = () => {
      const next = this.resolveDefaults(this.state);
      if (next !== this.state) this.commit(next, null);
      else this.scheduleRender();
    };
    this.cleanup.push(series.on('meta', update));
    this.cleanup.push(series.on('status', () => this.scheduleRender()));
    this.cleanup.push(series.on('progress', () => this.scheduleRender()));
    this.cleanup.push(series.on('frame', (index) => {
      for (let i = 0; i < visibleCount(this.state.layout); i++) {
        if (this.state.viewports[i].index === index && !this.state.viewports[i].window) {
          update();
          return;
        }
      }
      this.scheduleRender();
    }));
  }

  /** Geometry of viewport i: CSS size and the displayed frame's size and pixel aspect, or null. */
  geometry(i) {
    const series = this.seriesFor(i);
    if (!series || !series.meta || !series.length) return null;
    const view = this.views[i];
    const frame = series.frames[clampIndex(this.state.viewports[i].index, series.length)];
    const size = view.size ?? measure(view.root);
    return {width: size.width, height: size.height, columns: frame.columns, rows: frame.rows,
      aspect: pixelAspect(frame.pixel_spacing)};
  }

  // ---- rendering ----------------------------------------------------------------------------------------

  /** Render at the next animation frame; `marksOnly` requests only the overlay layer (unless more is due). */
  scheduleRender(marksOnly = false) {
    if (!marksOnly) this.fullRenderDue = true;
    if (this.frameRequested) return;
    this.frameRequested = requestAnimationFrame(() => {
      this.frameRequested = 0;
      const full = this.fullRenderDue;
      this.fullRenderDue = false;
      this.render(!full);
    });
  }

  /** Draw the current state. `marksOnly` skips the image layer (pointer and annotation updates). */
  render(marksOnly = false) {
    const count = visibleCount(this.state.layout);
    this.grid.dataset.layout = this.state.layout;
    let settled = true;
    for (let i = 0; i < VIEWPORTS; i++) {
      const view = this.views[i];
      const visible = i < count;
      view.root.hidden = !visible;
      if (!visible) continue;
      view.root.classList.toggle('is-active', i === this.state.active && count > 1);
      if (!marksOnly) settled = this.renderImage(i) && settled;
      this.renderMarks(i);
    }
    if (settled && !marksOnly && this.settleWaiters.length) {
      for (const resolve of this.settleWaiters.splice(0)) resolve();
    }
  }

  /** Paint viewport i's image layer and text; returns whether it shows what the state asks for. */
  renderImage(i) {
    const view = this.views[i];
    const vp = this.state.viewports[i];
    const series = this.seriesFor(i);
    const size = measure(view.root);
    view.size = size;
    const dpr = window.devicePixelRatio || 1;
    resizeCanvas(view.marks, size, dpr);

    if (view.series && view.series !== series) view.series.setFocus(i, null);
    view.series = series;
    const status = series ? series.status : null;
    // The two outages in the page's language; any other message is the server's own.
    view.message.textContent = status ? (this.labels[status.kind] || status.message) : '';
    view.message.hidden = !status;
    view.message.classList.toggle('is-transient', Boolean(status && status.transient));
    view.empty.hidden = Boolean(series);
    view.empty.textContent = this.labels.empty;

    if (!series || !series.meta || !series.length) {
      resizeCanvas(view.image, size, 1);
      clearCanvas(view.image);
      view.drawKey = '';
      setCorners(view, {tl: [], tr: [], bl: [], br: []});
      view.scroll.hidden = true;
      this.renderProgress(view, series);
      return !series || Boolean(status) || (series.meta && !series.length);
    }

    const index = clampIndex(vp.index, series.length);
    const frameMeta = series.frames[index];
    series.setFocus(i, index);
    let frame = series.get(index);
    if (!frame && !series.isFailed(index)) series.want(index);
    const win = vp.window ?? defaultWindow(frameMeta, frame);
    let shown = false;
    if (frame && win) {
      const invert = vp.invert !== (frameMeta.photometric === 'MONOCHROME1');
      const paintKey = `${series.url}#${index}#${win.center}/${win.width}#${invert}`;
      if (paintKey !== view.paintKey) {
        if (!view.buffer || view.buffer.width !== frame.columns || view.buffer.height !== frame.rows) {
          view.buffer = new OffscreenCanvas(frame.columns, frame.rows);
          view.bufferCtx = view.buffer.getContext('2d');
          view.pixels = new ImageData(frame.columns, frame.rows);
        }
        view.painter.paint(frame, win, invert, view.pixels);
        view.bufferCtx.putImageData(view.pixels, 0, 0);
        view.paintKey = paintKey;
        view.paintedIndex = index;
      }
      shown = true;
    }
    const g = {width: size.width, height: size.height, columns: frameMeta.columns, rows: frameMeta.rows,
      aspect: pixelAspect(frameMeta.pixel_spacing)};
    const t = imageTransform(g, vp);
    const layer = imageLayerScale(dpr, Math.max(t.a, t.d));
    resizeCanvas(view.image, size, layer);
    if (view.paintKey && view.paintKey.startsWith(`${series.url}#`)) {
      const smooth = this.interpolation === 'linear';
      const drawKey = `${view.paintKey}|${t.a},${t.d},${t.e},${t.f}|${view.image.width}x${view.image.height}|${smooth}`;
      if (drawKey !== view.drawKey) {
        const ctx = view.image.getContext('2d');
        const kx = view.image.width / size.width;
        const ky = view.image.height / size.height;
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.clearRect(0, 0, view.image.width, view.image.height);
        ctx.imageSmoothingEnabled = smooth;
        ctx.imageSmoothingQuality = 'low';
        view.image.classList.toggle('is-pixelated', !smooth);
        ctx.setTransform(kx * t.a, 0, 0, ky * t.d, kx * t.e, ky * t.f);
        ctx.drawImage(view.buffer, 0, 0);
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        view.drawKey = drawKey;
      }
    } else {
      clearCanvas(view.image);
      view.drawKey = '';
    }

    // While the asked-for slice is on its way the previous image stays up (no black flash when scrolling fast),
    // so the overlay names the slice actually on screen and says which one is coming: text and pixels agree.
    const onScreen = view.paintKey.startsWith(`${series.url}#`) ? view.paintedIndex : index;
    const text = overlayText({meta: series.meta, frameMeta: series.frames[onScreen],
      viewport: {...vp, index: onScreen, window: win}, count: series.length, labels: this.labels});
    if (!shown && onScreen !== index) text.tr.push(`${this.labels.loading} ${this.labels.image} ${index + 1}…`);
    setCorners(view, text);
    view.scroll.hidden = series.length < 2;
    const thumb = Math.max(100 / series.length, 3);
    view.thumb.style.height = `${thumb}%`;
    view.thumb.style.top = `${series.length > 1 ? (index / (series.length - 1)) * (100 - thumb) : 0}%`;
    view.scroll.setAttribute('aria-valuemax', String(series.length));
    view.scroll.setAttribute('aria-valuenow', String(index + 1));
    this.renderProgress(view, series);
    view.root.dataset.index = String(index);
    view.root.dataset.drawn = shown ? 'true' : 'false';
    return shown || Boolean(status) || series.isFailed(index);
  }

  renderProgress(view, series) {
    if (!series) {
      view.progress.hidden = true;
      return;
    }
    const total = series.length;
    const busy = !series.meta ? !series.status || series.status.transient
      : total > 0 && series.loaded < total && !series.halted && !series.pool.full;
    view.progress.hidden = !busy;
    if (!busy) return;
    const fraction = total ? series.loaded / total : 0;
    view.bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    view.progressText.textContent = total ? `${this.labels.loading} ${series.loaded}/${total}` : `${this.labels.loading}…`;
    view.progress.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
  }

  /** The overlay layer: measurements, the draft measurement, and the registered overlay hooks. */
  renderMarks(i) {
    const view = this.views[i];
    const canvas = view.marks;
    const ctx = canvas.getContext('2d');
    const dpr = window.devicePixelRatio || 1;
    const g = this.geometry(i);
    const vp = this.state.viewports[i];
    const draft = this.draft && this.draft.viewport === i;
    const wanted = Boolean(g) && (draft || this.overlays.size > 0 || vp.measurements.some((m) => m.index === vp.index));
    // Clearing a 4K overlay costs as much as drawing the image: skip it when it is already empty.
    if (!wanted && !view.marksDrawn) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    view.marksDrawn = wanted;
    if (!wanted) return;
    const series = this.seriesFor(i);
    const frameMeta = series.frames[clampIndex(vp.index, series.length)];
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const imageToScreen = (x, y) => toScreen(g, vp, x, y);
    const screenToImage = (x, y) => toImage(g, vp, x, y);
    const marks = draft ? [...vp.measurements, this.draft] : vp.measurements;
    drawMeasurements(ctx, marks, vp.index, frameMeta.pixel_spacing, imageToScreen);
    const info = {viewport: i, state: vp, series: series.meta, frame: frameMeta, width: g.width, height: g.height,
      imageToScreen, screenToImage, scale: toScreen(g, vp, 1, 0).x - toScreen(g, vp, 0, 0).x};
    for (const draw of this.overlays) {
      ctx.save();
      try {
        draw(ctx, info);
      } catch (err) {
        console.error('viewer overlay failed', err);
      }
      ctx.restore();
    }
  }

  // ---- DOM and events -----------------------------------------------------------------------------------

  /** Reflect the state in the toolbar (pressed buttons). */
  syncToolbar() {
    if (this.input) this.input.syncToolbar();
  }

  listen(target, type, handler, opts) {
    target.addEventListener(type, handler, opts);
    this.cleanup.push(() => target.removeEventListener(type, handler, opts));
  }

  createView(i) {
    const root = document.createElement('div');
    root.className = 'rcp-vp';
    root.dataset.viewport = String(i);
    root.innerHTML = `
      <canvas class="rcp-vp__image"></canvas>
      <canvas class="rcp-vp__marks"></canvas>
      <div class="rcp-vp__text rcp-vp__text--tl"></div>
      <div class="rcp-vp__text rcp-vp__text--tr"></div>
      <div class="rcp-vp__text rcp-vp__text--bl"></div>
      <div class="rcp-vp__text rcp-vp__text--br"></div>
      <div class="rcp-vp__probe" hidden></div>
      <div class="rcp-vp__empty"></div>
      <div class="rcp-vp__message" role="alert" hidden></div>
      <div class="rcp-vp__scroll" role="scrollbar" aria-orientation="vertical" aria-valuemin="1" hidden>
        <div class="rcp-vp__thumb"></div>
      </div>
      <div class="rcp-vp__progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" hidden>
        <div class="rcp-vp__bar"></div><span class="rcp-vp__progress-text"></span>
      </div>`;
    this.grid.appendChild(root);
    const q = (s) => root.querySelector(s);
    const view = {
      root, image: q('.rcp-vp__image'), marks: q('.rcp-vp__marks'), probe: q('.rcp-vp__probe'),
      corners: {tl: q('.rcp-vp__text--tl'), tr: q('.rcp-vp__text--tr'), bl: q('.rcp-vp__text--bl'),
        br: q('.rcp-vp__text--br')},
      empty: q('.rcp-vp__empty'), message: q('.rcp-vp__message'), scroll: q('.rcp-vp__scroll'),
      thumb: q('.rcp-vp__thumb'), progress: q('.rcp-vp__progress'), bar: q('.rcp-vp__bar'),
      progressText: q('.rcp-vp__progress-text'), painter: new Painter(), paintKey: '', drawKey: '',
      buffer: null, bufferCtx: null, pixels: null, size: null, pending: null, failed: null,
    };
    return view;
  }

}

/** Translated labels the template put in data-viewer-labels (JSON), if any. */
function labelsFrom(element) {
  try {
    return element.dataset.viewerLabels ? JSON.parse(element.dataset.viewerLabels) : {};
  } catch {
    return {};
  }
}

function seriesKey(studyUid, seriesUid) {
  return `${studyUid ?? ''}|${seriesUid}`;
}

function measure(element) {
  const r = element.getBoundingClientRect();
  return {width: Math.max(1, r.width), height: Math.max(1, r.height)};
}

/**
 * Device pixels per CSS pixel for the image layer. Up to 2 device pixels per image pixel carry all the
 * image's information; beyond that, filling a 4K backing store only interpolates, which costs 4x in
 * software raster. So the image layer stops at 2 device pixels per image pixel (never below the CSS
 * resolution) and the compositor scales it; text, measurements and pointers are on the overlay layer, which
 * always has the full devicePixelRatio.
 */
export function imageLayerScale(dpr, cssPerImagePixel) {
  if (!(cssPerImagePixel > 0)) return dpr;
  const wanted = Math.ceil((2 / cssPerImagePixel) * 4) / 4;
  return Math.min(dpr, Math.max(1, wanted));
}

/** Size the backing store in device pixels so the image is sharp on 4K screens (devicePixelRatio 2+). */
function resizeCanvas(canvas, size, dpr) {
  const w = Math.max(1, Math.round(size.width * dpr));
  const h = Math.max(1, Math.round(size.height * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
}

function clearCanvas(canvas) {
  const ctx = canvas.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
}

function setCorners(view, text) {
  for (const corner of ['tl', 'tr', 'bl', 'br']) {
    const value = text[corner].join('\n');
    if (view.corners[corner].textContent !== value) view.corners[corner].textContent = value;
  }
}

export {formatLength, clampZoom};
