/**
 * What the user's hands do to the viewer: pointer drags (window/level, pan, zoom, stack, length), the wheel,
 * the keyboard, the scrollbar and the toolbar. Every gesture ends in a viewer action that makes a new state
 * (viewer.updateViewport, scrollBy, applyPreset...), never in drawing: drawing is the viewer's render().
 *
 * Mouse: left button = the selected tool, right = window/level, middle or Shift+left = pan, Ctrl+left = zoom,
 * wheel = one slice per notch, Ctrl+wheel = zoom at the pointer. Keys: arrows (slice), Page Up/Down (a tenth of
 * the stack), Home/End, + / - (zoom), F fit, I invert, R reset, L link stacks, Space cine, 1-5 presets,
 * Delete (last length on this slice), Escape (cancel a length).
 */

import {panBy, screenToImage as toImage, imageToScreen as toScreen, zoomAbout} from './viewer-geometry.js';
import {PRESETS} from './viewer-lut.js';
import {clampIndex} from './viewer-state.js';

const WHEEL_STEP = 50;

export class ViewerInput {
  constructor(viewer) {
    this.viewer = viewer;
    viewer.views.forEach((view, i) => this.bindView(i, view));
    viewer.listen(viewer.element, 'keydown', (e) => this.onKey(e));
    this.bindToolbar();
  }

  /** Pointer, wheel and scrollbar events of viewport i. */
  bindView(i, view) {
    const v = this.viewer;
    const root = view.root;
    v.listen(view.marks, 'pointerdown', (e) => this.onPointerDown(i, e));
    v.listen(view.marks, 'pointermove', (e) => this.onPointerMove(i, e));
    v.listen(view.marks, 'pointerup', (e) => this.onPointerUp(i, e));
    v.listen(view.marks, 'pointercancel', (e) => this.onPointerUp(i, e));
    v.listen(view.marks, 'pointerleave', () => {
      view.probe.hidden = true;
    });
    v.listen(view.marks, 'contextmenu', (e) => e.preventDefault());
    v.listen(root, 'wheel', (e) => this.onWheel(i, e), {passive: false});
    v.listen(view.scroll, 'pointerdown', (e) => this.onScrollbar(i, e));
    v.listen(view.scroll, 'pointermove', (e) => {
      if (view.scroll.hasPointerCapture(e.pointerId)) this.onScrollbar(i, e);
    });
  }

  local(i, e) {
    const v = this.viewer;
    const r = v.views[i].root.getBoundingClientRect();
    return {x: e.clientX - r.left, y: e.clientY - r.top};
  }

  onPointerDown(i, e) {
    const v = this.viewer;
    v.element.focus({preventScroll: true});
    v.setActive(i);
    const g = v.geometry(i);
    if (!g) return;
    e.preventDefault();
    const mode = e.button === 2 ? 'window' : e.button === 1 || (e.button === 0 && e.shiftKey) ? 'pan'
      : e.button === 0 && (e.ctrlKey || e.metaKey) ? 'zoom' : e.button === 0 ? v.tool : null;
    if (!mode) return;
    v.views[i].marks.setPointerCapture(e.pointerId);
    const p = this.local(i, e);
    const vp = v.state.viewports[i];
    const series = v.seriesFor(i);
    v.drag = {viewport: i, mode, pointer: e.pointerId, start: p, view: {...vp}, g,
      float: series.get(vp.index)?.kind === 'float32' || series.frames[vp.index].dtype === 'float32'};
    if (mode === 'measure') {
      const a = toImage(g, vp, p.x, p.y);
      v.draft = {viewport: i, index: vp.index, a, b: a};
    }
  }

  onPointerMove(i, e) {
    const v = this.viewer;
    const d = v.drag;
    if (!d || d.viewport !== i || d.pointer !== e.pointerId) {
      this.probe(i, e);
      return;
    }
    const p = this.local(i, e);
    const dx = p.x - d.start.x;
    const dy = p.y - d.start.y;
    const from = d.view;
    if (d.mode === 'window' && from.window) {
      // Horizontal drag changes the width (contrast), vertical the centre (brightness), as in most viewers.
      const k = Math.max(from.window.width / 256, d.float ? 1e-4 : 0.5);
      let width = Math.max(d.float ? 1e-3 : 1, from.window.width + dx * k);
      let center = from.window.center + dy * k;
      if (!d.float) {
        width = Math.round(width);
        center = Math.round(center);
      }
      v.updateViewport(i, {window: {center, width}}, 'window');
    } else if (d.mode === 'pan') {
      v.updateViewport(i, {pan: panBy(d.g, from, dx, dy)}, 'pan');
    } else if (d.mode === 'zoom') {
      v.updateViewport(i, zoomAbout(d.g, from, Math.exp(-dy * 0.01), d.start.x, d.start.y), 'zoom');
    } else if (d.mode === 'scroll') {
      const series = v.seriesFor(i);
      const step = Math.max(3, Math.min(20, d.g.height / Math.max(1, series.length)));
      const index = clampIndex(from.index + Math.round(dy / step), series.length);
      if (index !== v.state.viewports[i].index) v.updateViewport(i, {index}, 'slice');
    } else if (d.mode === 'measure' && v.draft) {
      v.draft = {...v.draft, b: toImage(d.g, v.state.viewports[i], p.x, p.y)};
      v.redrawOverlays();
    }
  }

  onPointerUp(i, e) {
    const v = this.viewer;
    const d = v.drag;
    if (!d || d.pointer !== e.pointerId) return;
    v.drag = null;
    if (d.mode === 'measure' && v.draft) {
      const draft = v.draft;
      v.draft = null;
      const a = toScreen(d.g, v.state.viewports[i], draft.a.x, draft.a.y);
      const b = toScreen(d.g, v.state.viewports[i], draft.b.x, draft.b.y);
      if (Math.hypot(a.x - b.x, a.y - b.y) >= 3) {
        const vp = v.state.viewports[i];
        const m = {index: draft.index, a: draft.a, b: draft.b};
        v.updateViewport(i, {measurements: [...vp.measurements, m]}, 'measure');
      } else {
        v.redrawOverlays();
      }
    }
  }

  /** Show the value under the pointer (HU for CT) in the viewport's corner. */
  probe(i, e) {
    const v = this.viewer;
    const view = v.views[i];
    const g = v.geometry(i);
    const series = v.seriesFor(i);
    if (!g || !series) return;
    const vp = v.state.viewports[i];
    const p = this.local(i, e);
    const q = toImage(g, vp, p.x, p.y);
    const frame = series.get(clampIndex(vp.index, series.length));
    const col = Math.floor(q.x);
    const row = Math.floor(q.y);
    if (!frame || col < 0 || row < 0 || col >= frame.columns || row >= frame.rows) {
      view.probe.hidden = true;
      return;
    }
    const k = row * frame.columns + col;
    let value;
    if (frame.samples === 3) value = `${frame.pixels[3 * k]} ${frame.pixels[3 * k + 1]} ${frame.pixels[3 * k + 2]}`;
    else value = frame.kind === 'float32' ? frame.pixels[k].toPrecision(4) : String(frame.pixels[k]);
    const unit = series.meta.modality === 'CT' ? 'HU' : v.labels.value;
    view.probe.textContent = `(${col}, ${row})  ${unit} ${value}`;
    view.probe.hidden = false;
  }

  onWheel(i, e) {
    const v = this.viewer;
    e.preventDefault();
    v.setActive(i);
    const dy = e.deltaMode === 1 ? e.deltaY * 40 : e.deltaMode === 2 ? e.deltaY * 800 : e.deltaY;
    if (e.ctrlKey || e.metaKey) {
      const g = v.geometry(i);
      const p = this.local(i, e);
      if (g) v.updateViewport(i, zoomAbout(g, v.state.viewports[i], Math.exp(-dy * 0.002), p.x, p.y), 'zoom');
      return;
    }
    // One notch of a mouse wheel is one slice; small trackpad deltas accumulate to one.
    if (Math.abs(dy) >= WHEEL_STEP) {
      v.wheelRest = 0;
      v.scrollBy(Math.sign(dy), i);
      return;
    }
    v.wheelRest += dy;
    if (Math.abs(v.wheelRest) >= WHEEL_STEP) {
      const step = Math.sign(v.wheelRest);
      v.wheelRest = 0;
      v.scrollBy(step, i);
    }
  }

  onScrollbar(i, e) {
    const v = this.viewer;
    const view = v.views[i];
    const series = v.seriesFor(i);
    if (!series || !series.meta || series.length < 2) return;
    e.preventDefault();
    e.stopPropagation();
    if (e.type === 'pointerdown') {
      v.setActive(i);
      view.scroll.setPointerCapture(e.pointerId);
    }
    const r = view.scroll.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (e.clientY - r.top) / Math.max(1, r.height)));
    v.scrollTo(f * (series.length - 1), i);
  }

  onKey(e) {
    const v = this.viewer;
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (e.target instanceof HTMLButtonElement && (e.key === ' ' || e.key === 'Enter')) return;
    const i = v.state.active;
    const series = v.seriesFor(i);
    const page = series && series.length ? Math.max(1, Math.round(series.length / 10)) : 10;
    const keys = {
      ArrowDown: () => v.scrollBy(1), ArrowRight: () => v.scrollBy(1),
      ArrowUp: () => v.scrollBy(-1), ArrowLeft: () => v.scrollBy(-1),
      PageDown: () => v.scrollBy(page), PageUp: () => v.scrollBy(-page),
      Home: () => v.scrollTo(0), End: () => v.scrollTo(Infinity),
      '+': () => v.zoomBy(1.25), '=': () => v.zoomBy(1.25), '-': () => v.zoomBy(0.8),
      i: () => v.invert(), r: () => v.reset(), f: () => v.fit(), l: () => v.setLinked(!v.link),
      ' ': () => v.setCine(!v.cine.playing),
      Escape: () => {
        v.draft = null;
        v.redrawOverlays();
      },
      Delete: () => {
        const vp = v.state.viewports[i];
        const idx = vp.measurements.map((m) => m.index).lastIndexOf(vp.index);
        if (idx >= 0) {
          v.updateViewport(i, {measurements: vp.measurements.filter((_, k) => k !== idx)}, 'measure');
        }
      },
    };
    PRESETS.forEach((p, k) => {
      keys[String(k + 1)] = () => v.applyPreset(p.key);
    });
    const action = keys[e.key];
    if (!action || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault();
    action();
  }

  cineStep(now) {
    const v = this.viewer;
    const interval = 1000 / v.cine.fps;
    if (now - v.cine.last < interval) return;
    const i = v.state.active;
    const series = v.seriesFor(i);
    if (!series || !series.meta || series.length < 2) return;
    const next = (v.state.viewports[i].index + 1) % series.length;
    // Cine holds on a frame that has not arrived yet rather than showing a gap.
    if (!series.get(next)) {
      series.want(next);
      return;
    }
    v.cine.last = now - Math.min(interval, now - v.cine.last - interval);
    v.updateViewport(i, {index: next}, 'slice');
  }

  bindToolbar() {
    const v = this.viewer;
    v.listen(v.element, 'click', (e) => {
      const control = e.target.closest('[data-viewer-action]');
      if (!control || !v.element.contains(control) || control.tagName === 'INPUT') return;
      const value = control.dataset.value;
      const actions = {
        tool: () => v.setTool(value), layout: () => v.setLayout(value), preset: () => v.applyPreset(value),
        fit: () => v.fit(), invert: () => v.invert(), reset: () => v.reset(),
        cine: () => v.setCine(!v.cine.playing, this.fpsInput()?.value),
        link: () => v.setLinked(!v.link),
        'zoom-in': () => v.zoomBy(1.25), 'zoom-out': () => v.zoomBy(0.8),
      };
      const action = actions[control.dataset.viewerAction];
      if (action) {
        e.preventDefault();
        action();
      }
    });
    const fps = this.fpsInput();
    if (fps) v.listen(fps, 'change', () => v.setCine(v.cine.playing, fps.value));
    this.syncToolbar();
  }

  fpsInput() {
    const v = this.viewer;
    return v.element.querySelector('[data-viewer-action="fps"]');
  }

  /** Reflect the state in the toolbar's pressed buttons. */
  syncToolbar() {
    const v = this.viewer;
    const vp = v.state.viewports[v.state.active];
    for (const control of v.element.querySelectorAll('[data-viewer-action]')) {
      const action = control.dataset.viewerAction;
      const value = control.dataset.value;
      let pressed = null;
      if (action === 'tool') pressed = value === v.tool;
      else if (action === 'layout') pressed = value === v.state.layout;
      else if (action === 'invert') pressed = vp.invert;
      else if (action === 'cine') pressed = v.cine.playing;
      else if (action === 'link') pressed = Boolean(v.link);
      else if (action === 'preset') {
        const p = PRESETS.find((x) => x.key === value);
        pressed = Boolean(p && vp.window && vp.window.center === p.center && vp.window.width === p.width);
      }
      if (pressed !== null) control.setAttribute('aria-pressed', String(pressed));
    }
  }
}
