/**
 * The presenter's pointer, in image coordinates (column, row of the displayed frame), so that it lands on the
 * same anatomy on every screen whatever its size, zoom or pan.
 *
 * The presenter's moves over any viewport of the layout are sampled at most 30 times a second (the server
 * coalesces them further: latest sample wins per tick); followers draw the latest sample with the viewer's
 * imageToScreen, only in the viewport it was taken over and only on the slice it was taken on (the shared view
 * puts the same series in the same viewport on every screen). A follower who is on another slice of that series
 * (browsing freely, or a moment behind) sees an edge marker instead: at the right edge of the viewport, level
 * with the pointer, an arrow and the presenter's image number ("Pointer: image 21"), so the pointer never
 * silently vanishes (issue 15, item 5). `sharedSeries(viewport)` (set by room.js) names the shared series of each
 * viewport: over any other series neither is shown.
 *
 * Example:
 *   const pointer = new Pointer(viewer, (msg) => socket.send(msg));
 *   pointer.setPresenting(true);       // start sampling
 *   pointer.show([[7, 120.5, 88.0, 42]]);     // samples from the server: [user, column, row, slice]
 *   pointer.show([[7, 120.5, 88.0, 42, 1]]);  // ... over viewport 1: [user, column, row, slice, viewport]
 */

const MAX_HZ = 30;

export class Pointer {
  constructor(viewer, send, {colour = '#ff3b30', label = ''} = {}) {
    this.viewer = viewer;
    this.send = send;
    this.colour = colour;
    this.label = label;
    this.presenting = false;
    this.latest = null; // {column, row, slice, viewport}
    this.lastSent = 0;
    this.pendingTimer = 0;
    this.pending = null;
    /** The shared view's series UID of viewport i (null: unknown, the pointer is drawn whatever the series). */
    this.sharedSeries = () => null;
    this.labels = {pointer_elsewhere: '%(number)s'}; // room.js hands the translated label
    this.edges = new Map(); // viewport -> its edge marker element
    this.removeOverlay = viewer.addOverlay((ctx, view) => this.draw(ctx, view));
    this.onMove = (e) => this.move(e);
    this.onLeave = () => this.queue(null);
    viewer.element.addEventListener('pointermove', this.onMove);
    viewer.element.addEventListener('pointerleave', this.onLeave);
  }

  setPresenting(presenting) {
    this.presenting = presenting;
    if (!presenting) this.latest = null;
    for (const edge of this.edges.values()) edge.hidden = true;
    this.viewer.redrawOverlays();
  }

  move(e) {
    if (!this.presenting) return;
    const hit = this.viewer.clientToImage(e.clientX, e.clientY);
    if (!hit) {
      this.queue(null);
      return;
    }
    const slice = this.viewer.getState().viewports[hit.viewport].index;
    this.queue({column: hit.x, row: hit.y, slice, viewport: hit.viewport});
  }

  /** At most MAX_HZ samples a second; the last one of a burst is always sent. */
  queue(sample) {
    this.pending = sample;
    const wait = this.lastSent + 1000 / MAX_HZ - performance.now();
    if (wait <= 0) {
      this.flush();
    } else if (!this.pendingTimer) {
      this.pendingTimer = setTimeout(() => this.flush(), wait);
    }
  }

  flush() {
    this.pendingTimer = 0;
    this.lastSent = performance.now();
    const s = this.pending;
    const p = s ? [Math.round(s.column * 10) / 10, Math.round(s.row * 10) / 10, s.slice] : [null, null, 0];
    if (s && s.viewport) p.push(s.viewport); // viewport 0 is implied: the usual sample stays three numbers
    this.send({type: 'pointer', p});
  }

  /** Samples from the server: [user, column, row, slice, viewport?] (viewport 0 if absent); column null hides it. */
  show(samples) {
    const last = samples[samples.length - 1];
    if (!last) return;
    this.latest = last[1] === null ? null : {column: last[1], row: last[2], slice: last[3], viewport: last[4] ?? 0};
    if (!this.latest) for (const edge of this.edges.values()) edge.hidden = true;
    this.viewer.redrawOverlays();
  }

  clear() {
    this.latest = null;
    for (const edge of this.edges.values()) edge.hidden = true;
    this.viewer.redrawOverlays();
  }

  draw(ctx, view) {
    const p = this.latest;
    const shared = this.sharedSeries(view.viewport);
    const here = p && !this.presenting && view.viewport === p.viewport &&
      (!shared || !view.state || view.state.seriesUid === shared);
    // view.state is the viewport's state: on another slice of the same series, an edge marker instead.
    const elsewhere = here && view.state && view.state.index !== p.slice;
    this.edge(view, elsewhere ? p : null);
    if (!here || elsewhere) return;
    const s = view.imageToScreen(p.column, p.row);
    if (!s) return;
    ctx.save();
    ctx.strokeStyle = this.colour;
    ctx.fillStyle = this.colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(s.x, s.y, 9, 0, Math.PI * 2);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(s.x, s.y, 2.5, 0, Math.PI * 2);
    ctx.fill();
    if (this.label) {
      ctx.font = '12px system-ui, sans-serif';
      ctx.fillText(this.label, s.x + 12, s.y - 10);
    }
    ctx.restore();
  }

  /** Show (sample) or hide (null) viewport `view.viewport`'s edge marker: a DOM element, read by screen readers. */
  edge(view, p) {
    let marker = this.edges.get(view.viewport);
    if (!p) {
      if (marker) marker.hidden = true;
      return;
    }
    if (!marker) {
      marker = document.createElement('span');
      marker.className = 'pointer-edge';
      marker.dataset.pointerEdge = String(view.viewport);
      marker.setAttribute('role', 'status');
      this.viewer.views[view.viewport].root.append(marker);
      this.edges.set(view.viewport, marker);
    }
    const s = view.imageToScreen(p.column, p.row);
    const y = Math.min(Math.max(s ? s.y : view.height / 2, 14), Math.max(14, view.height - 14));
    const number = String(p.slice + 1);
    const text = `${p.slice < view.state.index ? '▲' : '▼'} ${this.labels.pointer_elsewhere.replace('%(number)s', number)}`;
    if (marker.textContent !== text) marker.textContent = text;
    marker.dataset.slice = number;
    marker.style.top = `${y}px`;
    marker.style.borderColor = this.colour;
    marker.hidden = false;
  }

  destroy() {
    for (const edge of this.edges.values()) edge.remove();
    this.removeOverlay();
    this.viewer.element.removeEventListener('pointermove', this.onMove);
    this.viewer.element.removeEventListener('pointerleave', this.onLeave);
    clearTimeout(this.pendingTimer);
  }
}
