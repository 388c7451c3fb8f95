/**
 * What is written and drawn over the image: corner text (study, series, slice, window, zoom) and length
 * measurements. Text is computed by pure functions so it can be checked without a canvas.
 */

import {measureLength, slicePosition} from './viewer-geometry.js';
import {presetFor} from './viewer-lut.js';

/** DICOM DA (YYYYMMDD, PS3.5 6.2) to ISO 8601, which reads the same in every locale. */
export function formatStudyDate(da) {
  if (typeof da !== 'string') return '';
  const m = /^(\d{4})-?(\d{2})-?(\d{2})/.exec(da);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : da;
}

function round(value, digits = 1) {
  const k = 10 ** digits;
  return Math.round(value * k) / k;
}

function formatNumber(value) {
  if (!Number.isFinite(value)) return '';
  const abs = Math.abs(value);
  if (abs !== 0 && abs < 10) return String(round(value, abs < 1 ? 3 : 2));
  return String(Math.round(value));
}

/**
 * The four corners of a viewport's overlay.
 * @returns {{tl: string[], tr: string[], bl: string[], br: string[]}}
 */
export function overlayText({meta, frameMeta, viewport, count, labels}) {
  const t = labels;
  const tl = [];
  const tr = [];
  const bl = [];
  const br = [];
  if (meta) {
    const date = formatStudyDate(meta.study_date);
    if (date) tl.push(date);
    const series = [meta.modality, meta.series_number != null ? `${t.series} ${meta.series_number}` : '']
      .filter(Boolean).join(' · ');
    if (series) tl.push(series);
    if (meta.description) tl.push(meta.description);
  }
  if (count > 0) {
    tr.push(`${t.image} ${viewport.index + 1}/${count}`);
    const position = slicePosition(frameMeta);
    if (position != null) tr.push(`${t.position} ${round(position, 1).toFixed(1)} mm`);
    if (frameMeta && frameMeta.instance_number != null) tr.push(`${t.instance} ${frameMeta.instance_number}`);
  }
  if (viewport.window) {
    const preset = presetFor(viewport.window);
    bl.push(`C ${formatNumber(viewport.window.center)}  W ${formatNumber(viewport.window.width)}` +
      (preset ? `  (${t.presets[preset.key] ?? preset.label})` : ''));
  }
  if (viewport.invert) bl.push(t.inverted);
  if (meta) br.push(`${t.zoom} ${Math.round(viewport.zoom * 100)}%`);
  if (frameMeta && Array.isArray(frameMeta.pixel_spacing)) {
    br.push(`${round(frameMeta.pixel_spacing[1], 3)} × ${round(frameMeta.pixel_spacing[0], 3)} mm`);
  }
  return {tl, tr, bl, br};
}

export function formatLength(a, b, spacing) {
  const {value, unit} = measureLength(a, b, spacing);
  return `${value.toFixed(1)} ${unit}`;
}

/**
 * Draw the measurements of the displayed slice. `toScreen(x, y)` maps image to CSS pixels; the context is
 * already scaled for devicePixelRatio.
 */
export function drawMeasurements(ctx, measurements, index, spacing, toScreen) {
  ctx.save();
  ctx.lineWidth = 1.5;
  ctx.font = '600 13px system-ui, sans-serif';
  ctx.textBaseline = 'bottom';
  for (const m of measurements) {
    if (m.index !== index) continue;
    const a = toScreen(m.a.x, m.a.y);
    const b = toScreen(m.b.x, m.b.y);
    ctx.strokeStyle = '#ffd54a';
    ctx.fillStyle = '#ffd54a';
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    for (const p of [a, b]) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    const label = formatLength(m.a, m.b, spacing);
    const x = Math.max(a.x, b.x) + 6;
    const y = (a.y + b.y) / 2;
    ctx.lineWidth = 3;
    ctx.strokeStyle = 'rgba(0,0,0,0.85)';
    ctx.strokeText(label, x, y);
    ctx.fillText(label, x, y);
  }
  ctx.restore();
}
