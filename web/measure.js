// Measuring tools of one viewport: geometry drawn in image coordinates (PS3.3 C.18.6.1.1: the
// top left corner of the first pixel at 0,0) on a canvas over the stream, so it stays in place
// through scroll, zoom, pan and window changes; every value is the server's, computed from the
// stored values (POST /api/measure), shown beside the geometry. Saved measurements come back
// from the study's Measurement Reports (GET /api/reports).

import { api, el, failed } from "./common.js";

/** The tools: what each takes from a drag (two points) or clicks (freehand: the drag's path). */
export const TOOLS = [
  ["length", "Length"], ["angle", "Angle"], ["cobb", "Cobb"], ["ellipse", "Ellipse"],
  ["rectangle", "Rectangle"], ["freehand", "Freehand"], ["probe", "Probe"],
];

/** Points an angle and a Cobb angle take; they are drawn one click (or drag) at a time. */
const CLICKS = { angle: 3, cobb: 4 };

const fmt = (v, digits = 1) => (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits));

/** The label of a server answer (or a value read back from a report). */
export function label(m) {
  if (m.region) {
    const r = m.region;
    const u = m.value_unit ? ` ${m.value_unit}` : "";
    return `Mean ${fmt(r.mean)}${u} SD ${fmt(r.sd)}\nMin ${fmt(r.min)} Max ${fmt(r.max)}\n` +
      `Area ${fmt(r.area, 2)} ${r.area_unit === "mm2" ? "mm²" : "px²"}${typeof r.pixels === "number" ? ` (${r.pixels} px)` : ""}`;
  }
  const unit = m.unit === "deg" ? "°" : m.unit ? ` ${m.unit}` : "";
  const suffix = m.calibration && m.calibration.startsWith("uncalibrated") ? " (uncalibrated)" : "";
  return `${fmt(m.value, 2)}${unit}${suffix}`;
}

/** What POST /api/reports takes of a measured item: its instance's frame, or its MPR plane's
 * slice (kept in the patient). */
export const forReport = (i) => (i.mpr
  ? { series: i.series, mpr: i.mpr, kind: i.kind, points: i.points }
  : { series: i.series, instance: i.instance, frame: i.frame, kind: i.kind, points: i.points });

export class Measurements {
  constructor(vp) {
    this.vp = vp;
    this.canvas = el("canvas", { class: "measure" });
    this.labels = el("div", { class: "measure-labels" });
    vp.box.append(this.canvas, this.labels);
    this.tool = null;
    /** Each: { instance, frame, kind, points, answer, saved, pending } */
    this.items = [];
    this.drawing = null;
  }

  /** The slice shown: its instance and 1-based frame, from the series the stream opened; in an
   * MPR view, the plane, its slice and slab (measured on the server's reformatted image). */
  current() {
    const s = this.vp.series;
    if (s && s.mpr) {
      const mpr = { plane: s.mpr.plane, slice: this.vp.view.slice };
      if (s.mpr.rotate) mpr.rotate = s.mpr.rotate;
      if (this.vp.view.slab && this.vp.view.slab.thickness > 0) mpr.slab = this.vp.view.slab;
      return { series: s.series, study: s.study, mpr, key: `mpr:${JSON.stringify(mpr)}` };
    }
    const i = s && s.instances && s.instances[this.vp.view.slice];
    return i ? { series: s.series, study: s.study, instance: i[0], frame: i[1], key: `${i[0]}/${i[1]}` } : null;
  }

  /** Image → CSS pixels of the viewport, as the server places the picture (pipeline.rs). */
  placement() {
    const s = this.vp.series;
    if (!s || !s.columns || !s.rows) return null;
    const dpr = window.devicePixelRatio || 1;
    const [w, h] = this.vp.viewportSize();
    const scale = Math.min(w / s.columns, h / s.rows) * this.vp.view.zoom;
    const x0 = (w - s.columns * scale) / 2 + this.vp.view.pan[0];
    const y0 = (h - s.rows * scale) / 2 + this.vp.view.pan[1];
    return { scale: scale / dpr, x0: x0 / dpr, y0: y0 / dpr };
  }

  toImage(clientX, clientY) {
    const p = this.placement();
    const r = this.vp.box.getBoundingClientRect();
    return [(clientX - r.left - p.x0) / p.scale, (clientY - r.top - p.y0) / p.scale];
  }

  toScreen([x, y]) {
    const p = this.placement();
    return [p.x0 + x * p.scale, p.y0 + y * p.scale];
  }

  /** Starts drawing with the active tool, or places the next point of an angle (three
   * points: drag the first arm, click the other end) or a Cobb angle (drag each line); true
   * when the pointer is the tool's. */
  down(e) {
    if (!this.tool || e.button !== 0 || e.shiftKey || e.ctrlKey || e.altKey) return false;
    if (!this.placement() || !this.current()) return false;
    const at = this.toImage(e.clientX, e.clientY);
    const d = this.drawing;
    if (d) {
      d.points[d.points.length - 1] = at;
      if (d.kind === "cobb" && d.points.length === 3) d.points.push(at);
    } else {
      this.drawing = { kind: this.tool, points: this.tool === "probe" ? [at] : [at, at], slice: this.current(), held: true };
    }
    this.drawing.held = true;
    this.draw();
    return true;
  }

  /** Follows the pointer: the last point moves (a freehand outline grows). */
  move(e) {
    const d = this.drawing;
    if (!d || (d.kind === "probe")) return false;
    const at = this.toImage(e.clientX, e.clientY);
    if (d.kind === "freehand" && d.held) d.points.push(at);
    else if (d.kind !== "freehand") d.points[d.points.length - 1] = at;
    this.draw();
    return true;
  }

  /** Ends a drag: the item is measured once it has all its points. */
  up(e) {
    const d = this.drawing;
    if (!d) return false;
    this.move(e);
    d.held = false;
    const need = CLICKS[d.kind];
    if (need && d.points.length < need) {
      if (d.points.length === 2 || d.kind === "angle") d.points.push(d.points[d.points.length - 1]);
      return true;
    }
    this.drawing = null;
    if (d.kind === "freehand" && d.points.length > 400) {
      const step = Math.ceil(d.points.length / 400);
      d.points = d.points.filter((_, i) => i % step === 0);
    }
    this.measure({ ...d.slice, kind: d.kind, points: d.points });
    return true;
  }

  /** Asks the server for the value of a drawn item and shows its answer. */
  async measure(item) {
    item.pending = true;
    this.items.push(item);
    this.draw();
    const started = performance.now();
    try {
      const body = { study: item.study, series: item.series, kind: item.kind, points: item.points };
      if (item.mpr) body.mpr = item.mpr;
      else Object.assign(body, { instance: item.instance, frame: item.frame });
      item.answer = await api("/api/measure", { method: "POST", body });
      item.ms = performance.now() - started;
    } catch (err) {
      item.error = err.message;
      failed("Measurement", err);
    }
    item.pending = false;
    this.draw();
  }

  /** Adds the measurements of the study's reports that lie on this viewport's series. */
  load(reports) {
    const s = this.vp.series;
    if (!s) return;
    for (const r of reports) {
      for (const m of r.measurements) {
        const on = m.space ? this.onPlane(m) : m.image.series === s.series && { instance: m.image.instance, frame: m.image.frame || 1, points: m.points };
        if (!on) continue;
        const value = m.values[0] || { value: NaN, unit: "" };
        const answer = { kind: m.kind, value: value.value, unit: value.unit === "[hnsf'U]" ? "HU" : value.unit };
        const stats = Object.fromEntries(m.values.map((v) => [v.name, v.value]));
        if (stats.Area !== undefined && stats.Mean !== undefined) {
          answer.region = { area: stats.Area, area_unit: value.unit === "mm2" ? "mm2" : "px2", mean: stats.Mean,
            sd: stats["Standard Deviation"], min: stats.Minimum, max: stats.Maximum };
          answer.value = stats.Mean;
          answer.value_unit = m.values[1] && m.values[1].unit === "[hnsf'U]" ? "HU" : "";
        }
        const place = on.mpr ? { mpr: on.mpr, key: `mpr:${JSON.stringify(on.mpr)}` } : { instance: on.instance, frame: on.frame, key: `${on.instance}/${on.frame}` };
        this.items.push({ study: s.study, series: s.series, ...place, kind: m.kind, points: on.points, answer, saved: true, fromReport: r.instance });
      }
    }
    this.draw();
  }

  /** Where a measurement kept in the patient (`space`: its frame of reference and points, mm)
   * lies on this MPR view: the slice it lies in, within half a slice, and its points there;
   * null when it lies in none (another frame of reference, or across the plane). */
  onPlane(m) {
    const s = this.vp.series;
    const p = s && s.mpr;
    if (!p || !s.frame_of_reference || s.frame_of_reference !== m.space.frame_of_reference) return null;
    const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    const slice = this.vp.sliceAt(m.space.points[0]);
    const half = p.depths.length > 1 ? Math.abs(p.depths[1] - p.depths[0]) / 2 : 0.5;
    if (m.space.points.some((q) => Math.abs(dot(q, p.normal) - p.depths[slice]) > half + 1e-6)) return null;
    let points = m.space.points.map((q) => {
      const d = [0, 1, 2].map((i) => q[i] - p.corner[i]);
      return [dot(d, p.across) / p.pixel_mm, dot(d, p.down) / p.pixel_mm];
    });
    if (m.kind === "ellipse" || m.kind === "rectangle") {
      // drawn from the corners of its box
      const xs = points.map((q) => q[0]);
      const ys = points.map((q) => q[1]);
      points = [[Math.min(...xs), Math.min(...ys)], [Math.max(...xs), Math.max(...ys)]];
    }
    const mpr = { plane: p.plane, slice };
    if (p.rotate) mpr.rotate = p.rotate;
    return { mpr, points };
  }

  /** Draws the items of the slice shown, and their labels. */
  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const r = this.vp.box.getBoundingClientRect();
    if (c.width !== Math.round(r.width * dpr) || c.height !== Math.round(r.height * dpr)) {
      c.width = Math.round(r.width * dpr);
      c.height = Math.round(r.height * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, r.width, r.height);
    this.labels.replaceChildren();
    const here = this.current();
    if (!here || !this.placement()) return;
    const shown = this.items.filter((i) => i.key === here.key);
    if (this.drawing && this.drawing.slice.key === here.key) shown.push({ ...this.drawing, live: true });
    if (this.vp.drawExtra) this.vp.drawExtra(g);
    for (const item of shown) this.drawItem(g, item);
  }

  drawItem(g, item) {
    const pts = item.points.map((p) => this.toScreen(p));
    g.strokeStyle = item.saved ? "#7ab8ff" : "#ffd54a";
    g.fillStyle = g.strokeStyle;
    g.lineWidth = 1.5;
    g.beginPath();
    const [a, b] = pts;
    if (item.kind === "ellipse" && b) {
      g.ellipse((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, Math.abs(b[0] - a[0]) / 2, Math.abs(b[1] - a[1]) / 2, 0, 0, 2 * Math.PI);
    } else if (item.kind === "rectangle" && b) {
      g.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
    } else if (item.kind === "probe") {
      g.arc(a[0], a[1], 3, 0, 2 * Math.PI);
    } else if (item.kind === "cobb") {
      g.moveTo(...pts[0]); if (pts[1]) g.lineTo(...pts[1]);
      if (pts[2]) { g.moveTo(...pts[2]); if (pts[3]) g.lineTo(...pts[3]); }
    } else {
      g.moveTo(...pts[0]);
      for (const p of pts.slice(1)) g.lineTo(...p);
      if (item.kind === "freehand") g.closePath();
    }
    g.stroke();
    if (item.live) return;
    const anchor = pts.reduce((m, p) => (p[0] > m[0] ? p : m), pts[0]);
    const text = item.pending ? "…" : item.error ? item.error : label(item.answer);
    const box = el("div", {
      class: "measure-label", "data-kind": item.kind, "data-value": item.answer ? String(item.answer.value) : "",
      "data-saved": item.saved ? "1" : "",
    }, text);
    // through the CSSOM: the page's content security policy refuses style attributes
    box.style.left = `${Math.round(anchor[0] + 8)}px`;
    box.style.top = `${Math.round(anchor[1] - 8)}px`;
    this.labels.append(box);
  }
}
