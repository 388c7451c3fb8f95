/**
 * Where image pixels land on the screen, and back: pure functions, no DOM.
 *
 * Image coordinates follow DICOM PIXEL units (PS3.3 C.10.5.1.2, Graphic Data): x is the column, y the row,
 * (0, 0) is the top-left corner of the top-left pixel, its centre is (0.5, 0.5), and the bottom-right corner
 * of the image is (columns, rows). Positions shared in the live room are in these units, so a pointer lands
 * on the same anatomy on every screen size.
 *
 * A viewport's view is {zoom, pan}: zoom 1 fits the whole image in the viewport, and pan is the image point
 * at the centre of the viewport. Screen coordinates are CSS pixels from the viewport's top-left corner.
 *
 * Example:
 *   const g = {width: 640, height: 480, columns: 512, rows: 512, aspect: 1};
 *   imageToScreen(g, {zoom: 1, pan: {x: 256, y: 256}}, 256, 256)  // -> {x: 320, y: 240}
 */

/**
 * Width/height ratio of one pixel on screen from PixelSpacing [row spacing, column spacing] (PS3.3 10.7.1.3):
 * a pixel is `column spacing` mm wide and `row spacing` mm high.
 */
export function pixelAspect(spacing) {
  if (!Array.isArray(spacing) || !(spacing[0] > 0) || !(spacing[1] > 0)) return 1;
  return spacing[1] / spacing[0];
}

/** CSS pixels per image pixel along x and y. */
export function viewScale(g, view) {
  const fit = Math.min(g.width / (g.columns * g.aspect), g.height / g.rows);
  const sy = (Number.isFinite(fit) && fit > 0 ? fit : 1) * view.zoom;
  return {sx: sy * g.aspect, sy};
}

/** The view centre: the given pan, or the image centre when there is none yet. */
export function viewCentre(g, view) {
  return view.pan && Number.isFinite(view.pan.x) && Number.isFinite(view.pan.y)
    ? view.pan
    : {x: g.columns / 2, y: g.rows / 2};
}

export function imageToScreen(g, view, x, y) {
  const {sx, sy} = viewScale(g, view);
  const c = viewCentre(g, view);
  return {x: g.width / 2 + (x - c.x) * sx, y: g.height / 2 + (y - c.y) * sy};
}

export function screenToImage(g, view, x, y) {
  const {sx, sy} = viewScale(g, view);
  const c = viewCentre(g, view);
  return {x: c.x + (x - g.width / 2) / sx, y: c.y + (y - g.height / 2) / sy};
}

/** The canvas transform (a, d, e, f of setTransform) that draws image pixel (0, 0) at its screen place. */
export function imageTransform(g, view) {
  const {sx, sy} = viewScale(g, view);
  const c = viewCentre(g, view);
  return {a: sx, d: sy, e: g.width / 2 - c.x * sx, f: g.height / 2 - c.y * sy};
}

export const MIN_ZOOM = 0.05;
export const MAX_ZOOM = 64;

export function clampZoom(zoom) {
  return Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
}

/** Zoom by `factor` keeping the image point under screen point (x, y) where it is. */
export function zoomAbout(g, view, factor, x, y) {
  const zoom = clampZoom(view.zoom * factor);
  const p = screenToImage(g, view, x, y);
  const c = viewCentre(g, view);
  const k = view.zoom / zoom;
  return {zoom, pan: {x: p.x - (p.x - c.x) * k, y: p.y - (p.y - c.y) * k}};
}

/** Move the image by a screen displacement (dx, dy) in CSS pixels. */
export function panBy(g, view, dx, dy) {
  const {sx, sy} = viewScale(g, view);
  const c = viewCentre(g, view);
  return {x: c.x - dx / sx, y: c.y - dy / sy};
}

/** Length between two image points: millimetres when PixelSpacing is known, else image pixels. */
export function measureLength(a, b, spacing) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  if (Array.isArray(spacing) && spacing[0] > 0 && spacing[1] > 0) {
    return {value: Math.hypot(dx * spacing[1], dy * spacing[0]), unit: 'mm'};
  }
  return {value: Math.hypot(dx, dy), unit: 'px'};
}

/**
 * Slice position in mm along the slice normal (PS3.3 C.7.6.2.1.1: normal = row direction x column
 * direction), falling back to SliceLocation, or null.
 */
export function slicePosition(frame) {
  if (!frame) return null;
  const p = frame.position;
  const o = frame.orientation;
  if (Array.isArray(p) && p.length === 3 && Array.isArray(o) && o.length === 6) {
    const n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
    return p[0] * n[0] + p[1] * n[1] + p[2] * n[2];
  }
  if (typeof frame.slice_location === 'number') return frame.slice_location;
  if (Array.isArray(p) && p.length === 3) return p[2];
  return null;
}
