/**
 * The viewer's state: plain data that the live room can send, store and replay.
 *
 * {layout: '1x1'|'1x2'|'2x2', active: 0..3,
 *  viewports: [ x4 {studyUid, seriesUid, index, window: {center, width}|null, zoom, pan: {x, y}|null,
 *                   invert, measurements: [{index, a: {x, y}, b: {x, y}}]} ]}
 *
 * All four viewports are always present (a 1x1 layout shows the first), so a state is complete on its own:
 * rendering it needs nothing else. `window: null` means "the series' own default", `pan: null` "centred";
 * pan and measurement points are image coordinates (see viewer-geometry.js). These functions never mutate
 * their input.
 */

export const LAYOUTS = Object.freeze({
  '1x1': {rows: 1, columns: 1},
  '1x2': {rows: 1, columns: 2},
  '2x2': {rows: 2, columns: 2},
});

export const VIEWPORTS = 4;

export function visibleCount(layout) {
  const l = LAYOUTS[layout] ?? LAYOUTS['1x1'];
  return l.rows * l.columns;
}

export function emptyViewport() {
  return {studyUid: null, seriesUid: null, index: 0, window: null, zoom: 1, pan: null, invert: false,
    measurements: []};
}

export function initialState() {
  return {layout: '1x1', active: 0, viewports: Array.from({length: VIEWPORTS}, emptyViewport)};
}

function finite(value, fallback) {
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

function point(p) {
  return p && Number.isFinite(Number(p.x)) && Number.isFinite(Number(p.y)) ? {x: Number(p.x), y: Number(p.y)} : null;
}

/** A well-formed viewport from any partial input (missing fields take their defaults). */
export function normalizeViewport(input) {
  const v = emptyViewport();
  if (!input || typeof input !== 'object') return v;
  v.studyUid = input.studyUid ?? null;
  v.seriesUid = input.seriesUid ?? null;
  v.index = Math.max(0, Math.trunc(finite(input.index, 0)));
  if (input.window && Number.isFinite(Number(input.window.center)) && Number(input.window.width) > 0) {
    v.window = {center: Number(input.window.center), width: Number(input.window.width)};
  }
  v.zoom = Math.min(64, Math.max(0.05, finite(input.zoom, 1)));
  v.pan = point(input.pan);
  v.invert = Boolean(input.invert);
  v.measurements = Array.isArray(input.measurements)
    ? input.measurements
      .map((m) => ({index: Math.max(0, Math.trunc(finite(m && m.index, 0))), a: point(m && m.a), b: point(m && m.b)}))
      .filter((m) => m.a && m.b)
    : [];
  return v;
}

/** A complete state from any partial input. */
export function normalizeState(input) {
  const s = initialState();
  if (!input || typeof input !== 'object') return s;
  if (LAYOUTS[input.layout]) s.layout = input.layout;
  const viewports = Array.isArray(input.viewports) ? input.viewports : [];
  s.viewports = s.viewports.map((_, i) => normalizeViewport(viewports[i]));
  s.active = Math.min(visibleCount(s.layout) - 1, Math.max(0, Math.trunc(finite(input.active, 0))));
  return s;
}

export function cloneState(state) {
  return JSON.parse(JSON.stringify(state));
}

/** A new state with viewport i patched. */
export function withViewport(state, i, patch) {
  const viewports = state.viewports.slice();
  viewports[i] = {...viewports[i], ...patch};
  return {...state, viewports};
}

/** Clamp a slice index into a series of `count` frames. */
export function clampIndex(index, count) {
  if (!(count > 0)) return Math.max(0, index);
  return Math.min(count - 1, Math.max(0, index));
}

export function setLayout(state, layout) {
  if (!LAYOUTS[layout]) return state;
  return {...state, layout, active: Math.min(state.active, visibleCount(layout) - 1)};
}
