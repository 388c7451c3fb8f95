/**
 * Frames for the viewer: fetch, decode the RCP frame wire format, keep decoded frames, prefetch outward.
 *
 * Why this shape: a tumour-board meeting must never wait on the network once a series is open, so every
 * frame is decoded exactly once into a typed array (original modality values, e.g. Hounsfield units) and
 * kept; windowing happens later, per render, with a lookup table. Frames are fetched by one shared
 * `FramePool` with a fixed number of requests in flight (browsers open about six HTTP/1.1 connections per
 * host), nearest-to-the-displayed-slice first, so scrolling away from the current slice finds frames ready.
 *
 * Wire format (server contract, GET frame.url, header X-Rcp-Encoding):
 *   delta16-deflate  int16 modality values; per row d[c] = v[c] - v[c-1] (d[0] = v[0]) wrapped to 16 bits;
 *                    all low bytes (rows*columns, row-major) then all high bytes; zlib (RFC 1950).
 *   float32-deflate  float32 little-endian, row-major, zlib.
 *   rgb8-deflate     uint8, samples interleaved (RGB), row-major, zlib.
 *
 * Example:
 *   const pool = new FramePool({fetch});
 *   const series = pool.open('/api/imaging/studies/1.2/series/1.2.3');
 *   await series.ready;                      // metadata
 *   const frame = await series.want(0);      // {pixels: Int16Array, rows, columns, samples, kind}
 */

export const ENCODINGS = Object.freeze(['delta16-deflate', 'float32-deflate', 'rgb8-deflate']);

/** The service (not the PACS) cannot be reached at all: the viewer shows its page's `labels.network`. */
export const NETWORK_MESSAGE = 'Server unreachable, retrying';
/** 502/503/504 (the PACS behind the service): the viewer shows its page's `labels.pacs`. */
export const PACS_MESSAGE = 'PACS unreachable, retrying';

/**
 * A frame or series could not be fetched or decoded. `transient` errors are retried with backoff. `kind` names the
 * two outages the viewer words in the page's language ('network', 'pacs'); the message stays for the console.
 */
export class FrameError extends Error {
  constructor(message, {transient = false, status = 0, kind = ''} = {}) {
    super(message);
    this.name = 'FrameError';
    this.transient = transient;
    this.status = status;
    this.kind = kind;
  }
}

/** Inflate a zlib (RFC 1950) stream; `DecompressionStream('deflate')` is exactly that format. */
export async function inflate(body) {
  const stream = body instanceof ReadableStream ? body : new Blob([body]).stream();
  const out = await new Response(stream.pipeThrough(new DecompressionStream('deflate'))).arrayBuffer();
  return new Uint8Array(out);
}

/**
 * Undo the delta16 byte-plane transform: recombine low/high planes and prefix-sum each row.
 * Int16Array stores values modulo 2^16, which is exactly the wrap the encoder applied.
 */
export function undelta16(bytes, rows, columns) {
  const n = rows * columns;
  if (bytes.length !== 2 * n) {
    throw new FrameError(`frame has ${bytes.length} bytes, expected ${2 * n} for ${rows}x${columns} int16`);
  }
  const out = new Int16Array(n);
  let i = 0;
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0; c < columns; c++, i++) {
      acc = (acc + (bytes[i] | (bytes[n + i] << 8))) & 0xffff;
      out[i] = acc;
    }
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Turn inflated bytes into a decoded frame.
 * @returns {{pixels: Int16Array|Float32Array|Uint8Array, rows: number, columns: number, samples: number,
 *            kind: 'int16'|'float32'|'uint8', min: number, max: number}}
 */
export function decodeFrame(encoding, bytes, meta) {
  const rows = meta.rows;
  const columns = meta.columns;
  const n = rows * columns;
  if (encoding === 'delta16-deflate') {
    return withRange({pixels: undelta16(bytes, rows, columns), rows, columns, samples: 1, kind: 'int16'});
  }
  if (encoding === 'float32-deflate') {
    if (bytes.length !== 4 * n) {
      throw new FrameError(`frame has ${bytes.length} bytes, expected ${4 * n} for ${rows}x${columns} float32`);
    }
    let pixels;
    if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
      pixels = new Float32Array(bytes.buffer, bytes.byteOffset, n);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      pixels = new Float32Array(n);
      for (let i = 0; i < n; i++) pixels[i] = view.getFloat32(4 * i, true);
    }
    return withRange({pixels, rows, columns, samples: 1, kind: 'float32'});
  }
  if (encoding === 'rgb8-deflate') {
    const samples = meta.samples || 3;
    if (bytes.length !== samples * n) {
      throw new FrameError(`frame has ${bytes.length} bytes, expected ${samples * n} for ${rows}x${columns}x${samples}`);
    }
    return withRange({pixels: bytes, rows, columns, samples, kind: 'uint8'});
  }
  throw new FrameError(`unsupported frame encoding ${encoding || '(none)'}`);
}

function withRange(frame) {
  const px = frame.pixels;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < px.length; i++) {
    const v = px[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  frame.min = min === Infinity ? 0 : min;
  frame.max = max === -Infinity ? 0 : max;
  return frame;
}

/** Build a FrameError from a failed response, using the service's JSON {"error","message"} when present. */
async function responseError(response) {
  let message = '';
  try {
    const body = await response.json();
    if (body && typeof body.message === 'string') message = body.message;
  } catch {
    // not JSON: fall back to the status line below
  }
  const transient = response.status === 429 || response.status === 502 || response.status === 503 ||
    response.status === 504;
  if (!message) message = transient ? PACS_MESSAGE : `HTTP ${response.status}`;
  const retryAfter = Number(response.headers.get('Retry-After'));
  const kind = response.status === 502 || response.status === 503 || response.status === 504 ? 'pacs' : '';
  const error = new FrameError(message, {transient, status: response.status, kind});
  // RFC 9110 10.2.3: delay-seconds form only; an HTTP-date falls back to our own backoff.
  if (Number.isFinite(retryAfter) && retryAfter >= 0) error.retryAfterMs = Math.min(30000, retryAfter * 1000);
  return error;
}

/** Fetch, check and decode one frame. */
export async function fetchFrame(fetchFn, frameMeta, {signal} = {}) {
  let response;
  try {
    response = await fetchFn(frameMeta.url, {signal, credentials: 'same-origin'});
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new FrameError(NETWORK_MESSAGE, {transient: true, kind: 'network'});
  }
  if (!response.ok) throw await responseError(response);
  const encoding = response.headers.get('X-Rcp-Encoding') || '';
  if (!ENCODINGS.includes(encoding)) {
    throw new FrameError(`unsupported frame encoding ${encoding || '(none)'}`);
  }
  let bytes;
  try {
    bytes = await inflate(response.body ?? await response.arrayBuffer());
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new FrameError('a frame is corrupt (bad deflate stream)');
  }
  return decodeFrame(encoding, bytes, frameMeta);
}

const NONE = 0;
const LOADING = 1;
const DONE = 2;
const FAILED = 3;

/**
 * One series: its metadata, its decoded frames, what the viewports want next.
 *
 * Events (`series.on(name, cb)`): 'meta', 'frame' (index), 'progress', 'status'.
 */
export class Series {
  constructor(url, pool) {
    this.url = url;
    this.pool = pool;
    this.meta = null;
    this.frames = [];
    this.decoded = [];
    this.states = new Uint8Array(0);
    this.loaded = 0;
    /** {message, transient} or null: what the viewport shows over the image. */
    this.status = null;
    this.halted = false;
    this.retryAt = 0;
    this.failures = 0;
    this.focus = new Map();
    this.urgent = new Set();
    this.bytes = 0;
    this.lastUsed = performance.now();
    this.waiters = new Map();
    this.listeners = new Map();
    this.ready = this.loadMeta();
  }

  get length() {
    return this.frames.length;
  }

  get complete() {
    return this.length > 0 && this.loaded === this.length;
  }

  on(name, cb) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(cb);
    return () => this.listeners.get(name).delete(cb);
  }

  emit(name, arg) {
    for (const cb of this.listeners.get(name) ?? []) cb(arg, this);
  }

  /** A short label for messages: "series 3". */
  get label() {
    return this.meta && this.meta.series_number != null ? `series ${this.meta.series_number}` : 'series';
  }

  async loadMeta() {
    for (;;) {
      try {
        let response;
        try {
          response = await this.pool.fetch(this.url, {credentials: 'same-origin', headers: {Accept: 'application/json'}});
        } catch {
          throw new FrameError(NETWORK_MESSAGE, {transient: true, kind: 'network'});
        }
        if (!response.ok) throw await responseError(response);
        const meta = await response.json();
        if (!meta || !Array.isArray(meta.frames)) throw new FrameError('series metadata has no frames list');
        this.meta = meta;
        this.frames = meta.frames;
        this.decoded = new Array(meta.frames.length).fill(null);
        this.states = new Uint8Array(meta.frames.length);
        this.status = meta.frames.length ? null : {message: `${this.label}: no images`, transient: false};
        this.failures = 0;
        this.emit('meta');
        this.emit('status');
        this.pool.pump();
        return this;
      } catch (err) {
        const transient = err instanceof FrameError ? err.transient : false;
        this.status = {message: err.message || String(err), transient, kind: err.kind || ''};
        this.emit('status');
        if (!transient) return this;
        await sleep(Math.max(this.backoff(), err.retryAfterMs ?? 0));
      }
    }
  }

  backoff() {
    this.failures += 1;
    return Math.min(8000, 500 * 2 ** (this.failures - 1));
  }

  /** The decoded frame at `index`, or null if it is not here yet. */
  get(index) {
    this.lastUsed = performance.now();
    return this.decoded[index] ?? null;
  }

  isFailed(index) {
    return this.states[index] === FAILED;
  }

  /** Declare where a viewport looks: prefetch goes outward from here. */
  setFocus(key, index) {
    if (index == null) this.focus.delete(key);
    else this.focus.set(key, index);
    this.pool.pump();
  }

  /** Ask for a frame now (the displayed one); resolves with the decoded frame, rejects if it failed. */
  want(index) {
    if (this.decoded[index]) return Promise.resolve(this.decoded[index]);
    if (!this.waiters.has(index)) {
      let resolve;
      let reject;
      const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => {});
      this.waiters.set(index, {promise, resolve, reject});
    }
    if (this.states[index] !== FAILED) {
      this.urgent.add(index);
      this.pool.pump();
    } else {
      this.settle(index, null, this.status);
    }
    return this.waiters.get(index).promise;
  }

  settle(index, frame, error) {
    const waiter = this.waiters.get(index);
    if (!waiter) return;
    this.waiters.delete(index);
    if (frame) waiter.resolve(frame);
    else waiter.reject(new FrameError(error ? error.message : 'frame failed'));
  }

  /** Next frame to fetch: urgent ones first, then nearest to any focus, alternating forward and back. */
  next(now) {
    if (!this.meta || now < this.retryAt) return -1;
    for (const index of this.urgent) {
      if (this.states[index] === NONE) return index;
      if (this.states[index] !== LOADING) this.urgent.delete(index);
    }
    if (this.halted || this.pool.full) return -1;
    const n = this.length;
    let best = -1;
    let bestDistance = Infinity;
    for (const focus of this.focus.values()) {
      const f = Math.max(0, Math.min(n - 1, focus));
      for (let d = 0; d < n && d < bestDistance; d++) {
        const ahead = f + d;
        if (ahead < n && this.states[ahead] === NONE) {
          best = ahead;
          bestDistance = d;
          break;
        }
        const behind = f - d - 1;
        if (behind >= 0 && this.states[behind] === NONE && d + 1 < bestDistance) {
          best = behind;
          bestDistance = d + 1;
          break;
        }
        if (ahead >= n && behind < 0) break;
      }
    }
    return best;
  }

  async load(index, signal) {
    this.states[index] = LOADING;
    try {
      const frame = await fetchFrame(this.pool.fetch, this.frames[index], {signal});
      this.decoded[index] = frame;
      this.states[index] = DONE;
      this.urgent.delete(index);
      this.loaded += 1;
      this.bytes += frame.pixels.byteLength;
      this.pool.account(frame.pixels.byteLength);
      this.failures = 0;
      if (this.status && this.status.transient) {
        this.status = null;
        this.emit('status');
      }
      this.settle(index, frame, null);
      this.emit('frame', index);
      this.emit('progress');
    } catch (err) {
      if (err && err.name === 'AbortError') {
        this.states[index] = NONE;
        return;
      }
      const transient = err instanceof FrameError && err.transient;
      if (transient) {
        this.states[index] = NONE;
        const delay = Math.max(this.backoff(), err.retryAfterMs ?? 0);
        this.retryAt = performance.now() + delay;
        this.status = {message: err.message, transient: true, kind: err.kind || ''};
        setTimeout(() => this.pool.pump(), delay + 5);
      } else {
        this.states[index] = FAILED;
        this.urgent.delete(index);
        this.halted = true;
        const message = err && err.message ? err.message : String(err);
        this.status = {message: /^series\b/i.test(message) ? message : `${this.label}: ${message}`, transient: false};
        this.settle(index, null, this.status);
      }
      this.emit('status');
    }
  }
}

/**
 * Forget the decoded frames; the pool asks, not the viewer. They are fetched again if shown again: frames are
 * `no-store` (nothing of a patient on the workstation's disk), so this memory is the viewer's only cache.
 */
Series.prototype.drop = function drop() {
  for (let i = 0; i < this.states.length; i++) {
    if (this.states[i] === DONE) this.states[i] = NONE;
  }
  this.decoded.fill(null);
  this.loaded = 0;
  const freed = this.bytes;
  this.bytes = 0;
  this.emit('progress');
  return freed;
};

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Owner of every series and of the requests in flight. One per viewer; series are shared by viewports
 * (the same series in two viewports is fetched and decoded once).
 */
export class FramePool {
  /**
   * @param budgetBytes decoded pixels kept in memory. A tumour board opens series after series; without a
   *   budget a long meeting would exhaust the tab (a 300-slice 512x512 CT is 157 MB decoded). Over budget,
   *   series no viewport shows are forgotten, least recently used first, and background prefetch pauses;
   *   displayed frames are always fetched.
   */
  constructor({fetch: fetchFn = globalThis.fetch.bind(globalThis), concurrency = 6, budgetBytes = 1.5e9} = {}) {
    this.fetch = fetchFn;
    this.concurrency = concurrency;
    this.budget = budgetBytes;
    this.used = 0;
    this.series = new Map();
    this.inflight = 0;
    this.turn = 0;
    this.controller = new AbortController();
  }

  get full() {
    return this.used >= this.budget;
  }

  account(bytes) {
    this.used += bytes;
    if (this.used <= this.budget) return;
    const idle = [...this.series.values()].filter((s) => s.focus.size === 0 && s.bytes > 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const s of idle) {
      if (this.used <= 0.8 * this.budget) break;
      this.used -= s.drop();
    }
  }

  /** The series behind a metadata URL, opened once. */
  open(url, {retry = false} = {}) {
    let series = this.series.get(url);
    // With `retry`, metadata that failed for good (404, 403...) is asked for again.
    if (retry && series && !series.meta && series.status && !series.status.transient) {
      this.series.delete(url);
      series = null;
    }
    if (!series) {
      series = new Series(url, this);
      this.series.set(url, series);
    }
    return series;
  }

  /** Start requests until `concurrency` are in flight; urgent frames of any series go first. */
  pump() {
    if (this.controller.signal.aborted) return;
    const all = [...this.series.values()];
    if (!all.length) return;
    const now = performance.now();
    while (this.inflight < this.concurrency) {
      let chosen = null;
      let index = -1;
      for (const s of all) {
        if (!s.urgent.size || !s.meta || now < s.retryAt) continue;
        for (const i of s.urgent) {
          if (s.states[i] === NONE) {
            chosen = s;
            index = i;
            break;
          }
        }
        if (chosen) break;
      }
      if (!chosen) {
        for (let k = 0; k < all.length && !chosen; k++) {
          const s = all[(this.turn + k) % all.length];
          const i = s.next(now);
          if (i >= 0) {
            chosen = s;
            index = i;
            this.turn = (this.turn + k + 1) % all.length;
          }
        }
      }
      if (!chosen) return;
      this.inflight += 1;
      chosen.load(index, this.controller.signal).finally(() => {
        this.inflight -= 1;
        this.pump();
      });
    }
  }

  /** Stop all requests; the pool cannot be used afterwards. Safe to call twice. */
  close() {
    this.controller.abort();
  }
}
