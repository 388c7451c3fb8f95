/**
 * Window/level: from modality values (e.g. Hounsfield units) to display grey levels.
 *
 * Integer data uses the DICOM linear VOI function (PS3.3 C.11.2.1.2.1); float data uses LINEAR_EXACT
 * (PS3.3 C.11.2.1.3.2), which also accepts windows narrower than 1 (SUV, parametric maps). Int16 frames go
 * through a 64k lookup table (one Uint32 RGBA word per possible value), so a 512x512 slice costs one table
 * read per pixel; the table is rebuilt only when the window or inversion changes.
 */

/** Window presets in HU for CT (centre, width). */
export const PRESETS = Object.freeze([
  {key: 'lung', label: 'Lung', center: -600, width: 1500},
  {key: 'mediastinum', label: 'Mediastinum', center: 40, width: 400},
  {key: 'abdomen', label: 'Abdomen', center: 40, width: 350},
  {key: 'bone', label: 'Bone', center: 400, width: 1800},
  {key: 'brain', label: 'Brain', center: 40, width: 80},
]);

export function presetFor(window) {
  if (!window) return null;
  return PRESETS.find((p) => p.center === window.center && p.width === window.width) ?? null;
}

/** DICOM linear window (PS3.3 C.11.2.1.2.1) to 0..255. */
export function linearGrey(x, center, width) {
  const w = Math.max(1, width);
  const c = center - 0.5;
  const half = (w - 1) / 2;
  if (x <= c - half) return 0;
  if (x > c + half) return 255;
  return Math.round(((x - c) / (w - 1) + 0.5) * 255);
}

/** LINEAR_EXACT window (PS3.3 C.11.2.1.3.2) to 0..255. */
export function exactGrey(x, center, width) {
  const w = width > 0 ? width : 1e-6;
  const y = ((x - center) / w + 0.5) * 255;
  return y <= 0 ? 0 : y >= 255 ? 255 : Math.round(y);
}

const OPAQUE = 0xff000000;

function pack(g) {
  return (OPAQUE | (g << 16) | (g << 8) | g) >>> 0;
}

/** 64k table: index = int16 value + 32768, entry = RGBA word (little-endian ImageData layout). */
export function buildLut16(center, width, invert) {
  const lut = new Uint32Array(65536);
  for (let i = 0; i < 65536; i++) {
    const g = linearGrey(i - 32768, center, width);
    lut[i] = pack(invert ? 255 - g : g);
  }
  return lut;
}

/** 256-entry table for uint8 samples (grey or one RGB channel). */
export function buildLut8(center, width, invert, exact) {
  const lut = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    const g = exact ? exactGrey(i, center, width) : linearGrey(i, center, width);
    lut[i] = invert ? 255 - g : g;
  }
  return lut;
}

/** The window a series opens with: the frame's own (PS3.3 C.11.2 Window Center/Width), else its range. */
export function defaultWindow(frameMeta, decoded) {
  if (frameMeta && frameMeta.samples === 3) return {center: 127.5, width: 255};
  if (frameMeta && Array.isArray(frameMeta.window) && frameMeta.window[1] > 0) {
    return {center: frameMeta.window[0], width: frameMeta.window[1]};
  }
  if (decoded) {
    const width = decoded.max - decoded.min;
    if (width > 0) return {center: decoded.min + width / 2, width};
    return {center: decoded.min, width: 1};
  }
  return null;
}

/**
 * Paints decoded frames into ImageData. Keeps its last tables so scrolling with a fixed window only reads
 * them.
 */
export class Painter {
  constructor() {
    this.key16 = '';
    this.lut16 = null;
    this.key8 = '';
    this.lut8 = null;
  }

  /**
   * @param frame decoded frame from frames.js
   * @param window {center, width}
   * @param invert whether to display inverted (user inversion XOR MONOCHROME1, PS3.3 C.7.6.3.1.2)
   * @param image ImageData of frame.columns x frame.rows
   */
  paint(frame, window, invert, image) {
    const out = new Uint32Array(image.data.buffer, image.data.byteOffset, image.width * image.height);
    const px = frame.pixels;
    const n = frame.rows * frame.columns;
    if (frame.kind === 'int16') {
      const key = `${window.center}/${window.width}/${invert}`;
      if (key !== this.key16) {
        this.lut16 = buildLut16(window.center, window.width, invert);
        this.key16 = key;
      }
      const lut = this.lut16;
      for (let i = 0; i < n; i++) out[i] = lut[px[i] + 32768];
    } else if (frame.kind === 'float32') {
      const w = window.width > 0 ? window.width : 1e-6;
      const k = 255 / w;
      const b = (0.5 - window.center / w) * 255;
      for (let i = 0; i < n; i++) {
        let g = px[i] * k + b;
        g = g <= 0 ? 0 : g >= 255 ? 255 : Math.round(g);
        if (g !== g) g = 0;
        out[i] = pack(invert ? 255 - g : g);
      }
    } else {
      const exact = frame.samples === 3;
      const key = `${window.center}/${window.width}/${invert}/${exact}`;
      if (key !== this.key8) {
        this.lut8 = buildLut8(window.center, window.width, invert, exact);
        this.key8 = key;
      }
      const lut = this.lut8;
      if (frame.samples === 3) {
        for (let i = 0, j = 0; i < n; i++, j += 3) {
          out[i] = (OPAQUE | (lut[px[j + 2]] << 16) | (lut[px[j + 1]] << 8) | lut[px[j]]) >>> 0;
        }
      } else {
        for (let i = 0; i < n; i++) out[i] = pack(lut[px[i]]);
      }
    }
  }
}
