// The image viewer: series thumbnails, one to four viewports, each showing a series through its
// own stream (worker.js), and the inputs that change what they show: wheel, arrow keys and drag
// scroll; right-drag (or shift-drag) windows; ctrl-drag or pinch zooms; middle-drag (or alt-drag)
// pans; presets by key and menu; the measuring tools (measure.js) draw with the left button.
// Overlays are drawn here, never burned into the pixels.
//
// MPR: three viewports show axial, coronal and sagittal planes cut by the server through the
// selected series' volume, each a stream like any other. Crosshairs are the lines where the
// other two planes cross a view (computed from the plane geometry the server sends); a click
// moves the crosshair there and scrolls the other views to it; [ and ] turn the other two
// planes about the selected view's normal (oblique); a slab (MIP, MinIP, average) of a chosen
// thickness is asked of the selected view.

import { api, dv, el, da, pn, failed, mayExport, message, state } from "./common.js";
import { PRESET_NAMES } from "./protocol.js";
import { Measurements, TOOLS, forReport } from "./measure.js";

/** The window presets the server offers (protocol.js is made by the server from its own list),
 * each with the label the viewer shows. */
const PRESETS = PRESET_NAMES.map((p) => [p, p[0].toUpperCase() + p.slice(1)]);
const KEYS = [
  ["Wheel, ↑ ↓, drag", "previous / next slice"], ["PgUp PgDn, Home End", "10 slices, first / last"],
  ["Right-drag or Shift-drag", "window / level"], ["1 … 7", "presets: " + PRESETS.map((p) => p[1]).join(", ")],
  ["0", "the series' own window"], ["Ctrl-drag, Ctrl-wheel, + −, pinch", "zoom"],
  ["Middle-drag or Alt-drag", "pan"], ["F", "fit"], ["R", "reset"], ["L", "next layout"],
  ["C", "play / stop the series (cine)"], ["Tab", "next viewport"],
  ["M", "MPR of the selected series (again: back)"], ["Click (MPR)", "move the crosshair"], ["[ ]", "turn the other planes (MPR, oblique)"], ["Tool menu, left-drag", "measure (Esc: back to scrolling)"], ["?", "this help"],
];

/** Viewports and their statistics, for whoever wants to look (the end-to-end tests do). */
window.strata = { viewports: [] };

/** Stream workers started ahead of need, so a viewport opened (three at once for MPR) does not
 * wait for its worker's script to load and start, which takes tens of ms each. They hold no
 * connection until a viewport takes one; the pool fills again a second later, when the page is
 * idle. */
const SPARE_WORKERS = 3;
const spareWorkers = [];
const startWorker = () => new Worker("/app/worker.js", { type: "module" });
const takeWorker = () => {
  const w = spareWorkers.pop() || startWorker();
  setTimeout(() => whenIdle(fillSpares), 1000); // not while the viewports just opened start
  return w;
};
window.strata.spareWorkers = () => spareWorkers.length;
const fillSpares = () => { while (spareWorkers.length < SPARE_WORKERS) spareWorkers.push(startWorker()); };
const whenIdle = (f) => (window.requestIdleCallback ? requestIdleCallback(f, { timeout: 2000 }) : setTimeout(f, 500));

class Viewport {
  constructor(grid, onSelect) {
    this.box = el("div", { class: "viewport", tabindex: "0" });
    this.canvas = el("canvas", {});
    this.tl = el("div", { class: "overlay tl" });
    this.tr = el("div", { class: "overlay tr" });
    this.bl = el("div", { class: "overlay bl" });
    this.br = el("div", { class: "overlay br" });
    this.badge = el("div", { class: "badge", hidden: true }, "LOSSY");
    this.errorBox = el("div", { class: "vp-error", hidden: true });
    this.box.append(this.canvas, this.tl, this.tr, this.bl, this.br, this.badge, this.errorBox);
    grid.append(this.box);
    this.seq = 0;
    this.series = null;
    this.view = { slice: 0, window: null, preset: null, zoom: 1, pan: [0, 0] };
    this.sent = new Map();
    this.stats = { latencies: [], serverMs: [], renderMs: [], paintedAt: [], paintedSlices: [], lastSeq: 0, slice: null, lossless: false, frames: 0, errors: [] };
    /** Cine as the server last said it: playing or not, at what rate, frames sent and skipped. */
    this.cine = { playing: false, fps: null, sent: 0, skipped: 0 };
    this.onCine = null;
    this.worker = takeWorker();
    const offscreen = this.canvas.transferControlToOffscreen();
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.worker.postMessage({ type: "init", canvas: offscreen, url: `${proto}//${location.host}/api/stream` }, [offscreen]);
    this.worker.onmessage = (e) => this.fromWorker(e.data);
    this.measure = new Measurements(this);
    this.reports = null;
    this.box.addEventListener("pointerdown", () => onSelect(this));
    this.resize = new ResizeObserver(() => this.sendView({}));
    this.resize.observe(this.box);
    window.strata.viewports.push(this);
  }

  close() {
    this.resize.disconnect();
    this.worker.postMessage({ type: "close" });
    this.worker.terminate();
    this.box.remove();
    window.strata.viewports = window.strata.viewports.filter((v) => v !== this);
  }

  /** Opens a series, or (with `mpr`: { plane, rotate }) a plane through its volume; `keep`
   * keeps the window, zoom and slab (an MPR plane turned). */
  open(study, series, mpr = null, keep = false) {
    this.series = null;
    this.mpr = mpr;
    const kept = this.view;
    this.view = { slice: 0, window: null, preset: null, zoom: 1, pan: [0, 0], slab: null };
    if (keep) Object.assign(this.view, { window: kept.window, preset: kept.preset, zoom: kept.zoom, pan: kept.pan, slab: kept.slab });
    this.centreOnOpen = Boolean(mpr);
    this.errorBox.hidden = true;
    this.cine = { playing: false, fps: null, sent: 0, skipped: 0 };
    const message = { type: "open", study, series };
    if (mpr) message.mpr = mpr;
    this.worker.postMessage({ type: "open", message });
    this.sendView({});
  }

  /** The patient point (mm) of image point [x, y] on the slice shown, in an MPR view. */
  patientPoint([x, y], slice = this.view.slice) {
    const m = this.series && this.series.mpr;
    if (!m) return null;
    const d = m.depths[slice];
    return [0, 1, 2].map((i) => m.corner[i] + (x * m.across[i] + y * m.down[i]) * m.pixel_mm + d * m.normal[i]);
  }

  /** The slice of this MPR view nearest to patient point `p`. */
  sliceAt(p) {
    const m = this.series && this.series.mpr;
    if (!m) return null;
    const d = p[0] * m.normal[0] + p[1] * m.normal[1] + p[2] * m.normal[2];
    let best = 0;
    m.depths.forEach((v, i) => { if (Math.abs(v - d) < Math.abs(m.depths[best] - d)) best = i; });
    return best;
  }

  /** Where slice `slice` of this view lies in the patient (mm): the top left corner of its
   * first pixel, its across, down and normal directions, its pixels' size across and down, its
   * size in pixels and its frame of reference; null when the series does not say. */
  plane(slice = this.view.slice) {
    const s = this.series;
    if (!s) return null;
    const m = s.mpr;
    if (m) {
      const d = m.depths[slice];
      return { corner: m.corner.map((c, i) => c + d * m.normal[i]), across: m.across, down: m.down, normal: m.normal,
        colMm: m.pixel_mm, rowMm: m.pixel_mm, columns: s.columns, rows: s.rows, frame: s.frame_of_reference };
    }
    const p = s.planes && s.planes[slice];
    if (!p) return null;
    const [across, down, rowMm, colMm] = [p.slice(3, 6), p.slice(6, 9), p[9], p[10]];
    const normal = [across[1] * down[2] - across[2] * down[1], across[2] * down[0] - across[0] * down[2], across[0] * down[1] - across[1] * down[0]];
    // Image Position is the first pixel's centre: its corner is half a pixel up and left
    const corner = [0, 1, 2].map((i) => p[i] - 0.5 * (across[i] * colMm + down[i] * rowMm));
    return { corner, across, down, normal, colMm, rowMm, rows: p[11], columns: p[12], frame: s.frame_of_reference };
  }

  /** Where the slice `other` shows crosses the one this view shows: a segment in this view's
   * image coordinates; null when they are parallel, miss each other, or lie in two frames of
   * reference. */
  crossing(other) {
    const a = this.plane();
    const b = other.plane();
    // the planes of one volume are comparable; acquired slices in one frame of reference
    if (!a || !b || !((this.mpr && other.mpr) || (a.frame && a.frame === b.frame))) return null;
    const dot = (u, v) => u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    // corner + x across colMm + y down rowMm, on the other plane: · n_b = corner_b · n_b
    const ax = dot(a.across, b.normal) * a.colMm;
    const ay = dot(a.down, b.normal) * a.rowMm;
    const c = dot(b.corner, b.normal) - dot(a.corner, b.normal);
    const [w, h] = [a.columns, a.rows];
    const ends = [];
    if (Math.abs(ay) > 1e-9) for (const x of [0, w]) { const y = (c - ax * x) / ay; if (y >= 0 && y <= h) ends.push([x, y]); }
    if (Math.abs(ax) > 1e-9) for (const y of [0, h]) { const x = (c - ay * y) / ax; if (x >= 0 && x <= w) ends.push([x, y]); }
    return ends.length >= 2 ? [ends[0], ends[ends.length - 1]] : null;
  }

  viewportSize() {
    const r = this.box.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    return [Math.max(16, Math.round(r.width * dpr)), Math.max(16, Math.round(r.height * dpr))];
  }

  /** Sends a change of view state (merged into the current one), stamped with a new seq; a
   * change that is not itself a linked view's echo is offered to the linked view (onSync). */
  sendView(change, fromSync = false) {
    Object.assign(this.view, change);
    // a plane being opened starts at its middle slice, which the server knows before we do
    if (change.slice !== undefined) this.centreOnOpen = false;
    if (!fromSync && this.onSync) this.onSync(this, change);
    const seq = ++this.seq;
    const message = { type: "view", seq, viewport: this.viewportSize(), zoom: this.view.zoom, pan: this.view.pan };
    if (!this.centreOnOpen) message.slice = this.view.slice;
    if (this.onView) this.onView(this);
    if (this.mpr) message.slab = this.view.slab || { thickness: 0, mode: "mip" };
    if (this.view.preset) message.preset = this.view.preset;
    else if (this.view.window) message.window = this.view.window;
    else message.preset = "default"; // the server keeps what a view leaves out
    this.sent.set(seq, performance.now());
    this.worker.postMessage({ type: "view", message });
    this.drawOverlays();
    this.measure.draw();
  }

  /** Plays the series at `fps` frames per second (null: its own rate); the server keeps the clock. */
  play(fps) {
    if (!this.series) return;
    const message = { type: "play" };
    if (fps) message.fps = fps;
    this.worker.postMessage({ type: "cine", message });
  }

  stop() {
    this.worker.postMessage({ type: "cine", message: { type: "stop" } });
  }

  fromWorker(m) {
    if (m.type === "text") this.text(m.message);
    else if (m.type === "painted") {
      const paintedAt = m.at - performance.timeOrigin;
      const sentAt = this.sent.get(m.seq);
      if (sentAt !== undefined && m.seq > this.stats.lastSeq) {
        this.stats.latencies.push(paintedAt - sentAt);
        for (const k of this.sent.keys()) if (k <= m.seq) this.sent.delete(k);
      }
      this.stats.lastSeq = Math.max(this.stats.lastSeq, m.seq);
      this.stats.slice = m.slice;
      this.stats.frames++;
      // what the server spent on the frame: render (a reformat too) and encode
      if (this.stats.serverMs.push(m.serverUs / 1000) > 10000) this.stats.serverMs.splice(0, 5000);
      if (this.stats.renderMs.push(m.renderUs / 1000) > 10000) this.stats.renderMs.splice(0, 5000);
      if (this.cine.playing && m.slice !== this.view.slice) {
        this.view.slice = m.slice; // the server's clock moves the slice
        this.drawOverlays();
        this.measure.draw();
      }
      this.stats.paintedAt.push(paintedAt);
      this.stats.paintedSlices.push(m.slice);
      if (this.stats.paintedAt.length > 10000) {
        this.stats.paintedAt.splice(0, 5000);
        this.stats.paintedSlices.splice(0, 5000);
      }
      this.stats.lossless = false;
      this.badge.hidden = false;
      this.badge.textContent = "LOSSY";
      this.badge.classList.remove("lossless");
    } else if (m.type === "lossless") {
      this.stats.lossless = m.ok;
      if (m.ok) {
        this.badge.textContent = "LOSSLESS";
        this.badge.classList.add("lossless");
      }
    } else if (m.type === "status") {
      if (!m.connected) {
        message("Connection to the server lost: reconnecting…");
        api("/api/me").catch(() => {});
      } else message(null);
    } else if (m.type === "error") this.showError(m.message);
  }

  text(m) {
    if (m.type === "series") {
      this.series = m;
      if (m.mpr && !m.mpr.complete) window.strata.previews = (window.strata.previews || 0) + 1;
      this.errorBox.hidden = true;
      if (this.onSeries) this.onSeries(this);
      if (this.onView) this.onView(this);
      if (this.centreOnOpen) {
        // the server opened the plane at the middle of the volume
        this.centreOnOpen = false;
        this.view.slice = Math.floor(m.slices / 2);
        if (this.onMpr) this.onMpr(this);
      }
      this.drawOverlays();
      this.showReports();
    } else if (m.type === "volume") {
      // the whole volume is built: the plane is made again from it (a new frame, then its still)
      if (this.series && this.series.mpr) this.series.mpr.complete = m.complete;
      this.drawOverlays();
    } else if (m.type === "cine") {
      this.cine = { playing: m.playing, fps: m.fps, sent: m.sent || 0, skipped: m.skipped || 0 };
      if (!m.playing && m.slice !== this.view.slice) {
        this.view.slice = m.slice;
        this.drawOverlays();
        this.measure.draw();
      }
      if (this.onCine) this.onCine(this);
    } else if (m.type === "error") {
      this.centreOnOpen = false; // a plane refused: what the reader does next is sent as it is
      this.stats.errors.push(m.message);
      this.showError(m.message);
    }
  }

  /** The saved measurements of the study (GET /api/reports) that lie on this series. */
  showReports() {
    this.measure.items = this.measure.items.filter((i) => !i.fromReport);
    if (this.reports && this.series) this.measure.load(this.reports);
    else this.measure.draw();
  }

  showError(text) {
    this.errorBox.textContent = text.charAt(0).toUpperCase() + text.slice(1);
    this.errorBox.hidden = false;
  }

  windowText() {
    if (this.view.preset) return this.view.preset;
    const w = this.view.window || (this.series && this.series.default_window);
    return w ? `W ${Math.round(w.width)} L ${Math.round(w.center)}` : "";
  }

  drawOverlays() {
    const s = this.series;
    if (!s) { this.tl.textContent = this.tr.textContent = this.bl.textContent = this.br.textContent = ""; return; }
    const p = s.patient || {};
    const st = s.study_info || {};
    this.tl.textContent = `${pn(p.name || "")}\n${p.id || ""}\n${da(p.birth_date)} ${p.sex || ""}`;
    const prior = this.linkNote ? `\n${this.linkNote}` : "";
    this.tr.textContent = `${da(st.date)} ${st.description || ""}\n${s.modality || ""} #${s.series_number || ""} ${s.series_description || ""}${prior}`;
    const cine = this.cine.playing ? `\n▶ ${this.cine.fps} fps` : "";
    const m = s.mpr;
    let plane = "";
    if (m) {
      const slab = this.view.slab && this.view.slab.thickness > 0 ? ` ${this.view.slab.mode.toUpperCase()} ${this.view.slab.thickness} mm` : "";
      const turned = m.rotate ? ` turned ${m.rotate.degrees}°` : "";
      const notes = [m.even ? "" : `uneven slices ${m.spacing[0].toFixed(2)}–${m.spacing[1].toFixed(2)} mm`,
        m.tilt_degrees > 0.5 ? `gantry tilt ${m.tilt_degrees.toFixed(1)}°` : ""].filter(Boolean).join(", ");
      const building = m.complete ? "" : "\nbuilding the volume: coarse until then";
      plane = `\nMPR ${m.plane}${turned}${slab}${notes ? `\n${notes}` : ""}${building}`;
    }
    this.bl.textContent = `Slice ${this.view.slice + 1}/${s.slices}${cine}${plane}`;
    this.drawDoseLegend();
    this.br.textContent = `${this.windowText()}\nZoom ${Math.round(this.view.zoom * 100)}%`;
    this.bl.dataset.slice = String(this.view.slice + 1);
  }

  /** An RT Dose grid's legend: the dose map's colours from the bottom of the window to its
   * top (the grid's highest dose unless the reader windows), in the grid's units. */
  drawDoseLegend() {
    const d = this.series && this.series.dose;
    if (!d || typeof d.max !== "number") { if (this.legend) this.legend.hidden = true; return; }
    if (!this.legend) {
      this.legendBar = el("div", { class: "bar" });
      this.legendLabels = el("div", { class: "labels" });
      this.legend = el("div", { class: "dose-legend" }, this.legendBar, this.legendLabels);
      this.box.append(this.legend);
    }
    this.legend.hidden = false;
    const w = this.view.window;
    const [lo, hi] = w ? [w.center - w.width / 2, w.center + w.width / 2] : [0, d.max];
    const stops = d.colours.map((c, i) => `rgb(${c.join(",")}) ${Math.round((100 * i) / (d.colours.length - 1))}%`);
    // through the CSSOM: the page's content security policy refuses style attributes
    this.legendBar.style.background = `linear-gradient(to top, ${stops.join(", ")})`;
    const unit = d.units === "GY" ? "Gy" : (d.units || "").toLowerCase();
    const fmt = (v) => (Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3));
    this.legendLabels.replaceChildren(...[hi, (lo + hi) / 2, lo].map((v) => el("span", {}, `${fmt(v)} ${unit}`)));
    this.legend.dataset.max = String(hi);
    this.legend.dataset.units = unit;
  }

  scroll(delta) {
    if (!this.series) return;
    const slice = Math.max(0, Math.min(this.series.slices - 1, this.view.slice + delta));
    if (slice !== this.view.slice) this.sendView({ slice });
  }

  windowBy(dx, dy) {
    const base = this.view.window || (this.series && this.series.default_window) || { center: 40, width: 400 };
    const width = Math.max(1, base.width + dx * 4);
    const center = base.center + dy * 2;
    this.sendView({ window: { center, width }, preset: null });
  }

  zoomBy(factor) {
    this.sendView({ zoom: Math.max(0.05, Math.min(50, this.view.zoom * factor)) });
  }
}

/**
 * Brings a study in the cold tier back before it is shown, saying so in `main` with the
 * progress; resolves to the seconds it took (null: the study was hot).
 */
async function fromCold(main, study) {
  const ask = () => api(`/api/studies/${encodeURIComponent(study)}/restore`, { method: "POST" });
  let r = await ask();
  if (r.state === "hot") return null;
  const started = Date.now();
  const note = el("p", { id: "cold-restore" });
  const bar = el("progress", { id: "cold-progress", max: 1, value: 0 });
  main.replaceChildren(el("div", { class: "viewer cold", id: "viewer-cold" }, note, bar));
  while (r.state !== "hot") {
    if (r.state === "failed") throw new Error(`the study could not be retrieved from cold storage: ${r.why}`);
    note.textContent = r.total
      ? `Retrieving from cold storage: ${r.done} of ${r.total} objects rebuilt`
      : "Retrieving from cold storage: waiting for its turn";
    bar.max = r.total || 1;
    bar.value = r.done;
    await new Promise((resolve) => setTimeout(resolve, 500));
    r = await ask();
  }
  return (Date.now() - started) / 1000;
}

/** Opens the viewer on a study in `main`; returns what closes it. */
export async function openViewer(main, study) {
  let series;
  let cold;
  try {
    cold = await fromCold(main, study);
    const q = ["0008103E", "00200011", "00080060", "00201209", "00180015"].map((t) => `includefield=${t}`).join("&");
    series = await api(`/dicomweb/studies/${study}/series?${q}`, { headers: { Accept: "application/dicom+json" } });
  } catch (err) {
    failed(`Study ${study}`, err);
    return () => {};
  }
  series.sort((a, b) => Number(dv(a, "00200011")) - Number(dv(b, "00200011")));
  const thumbs = el("div", { class: "thumbs", id: "thumbs" });
  const grid = el("div", { class: "grid l1x1", id: "grid" });
  const presetMenu = el("select", { id: "preset", "aria-label": "Window preset" },
    el("option", { value: "" }, "Window…"), el("option", { value: "default" }, "Series default"),
    PRESETS.map(([v, label]) => el("option", { value: v }, label)));
  const help = el("div", { class: "help", id: "help", hidden: true },
    el("h3", {}, "Keyboard and mouse"),
    el("table", {}, el("tbody", {}, KEYS.map(([k, what]) => el("tr", {}, el("td", {}, k), el("td", {}, what))))));
  const toolMenu = el("select", { id: "tool", "aria-label": "Measuring tool" },
    el("option", { value: "" }, "Scroll"), TOOLS.map(([v, label]) => el("option", { value: v }, label)));
  const cineFps = el("input", { type: "number", id: "cine-fps", min: "1", max: "60", step: "1", "aria-label": "Cine frames per second",
    title: "Cine rate in frames per second (empty: the series' own, from its Frame Time)", placeholder: "fps" });
  const cineButton = el("button", { type: "button", id: "cine", title: "Play the series as a loop (C)", onclick: () => toggleCine() }, "Play");
  const saveStatus = el("span", { id: "measure-status", class: "measure-status" });
  const mprButton = el("button", { type: "button", id: "mpr", title: "Axial, coronal and sagittal planes of the selected series (M)", onclick: () => toggleMpr() }, "MPR");
  const slabMode = el("select", { id: "slab-mode", "aria-label": "Slab", title: "Slab of the selected MPR view" },
    el("option", { value: "" }, "One voxel"), el("option", { value: "mip" }, "MIP"),
    el("option", { value: "minip" }, "MinIP"), el("option", { value: "average" }, "Average"));
  const slabMm = el("input", { type: "number", id: "slab-mm", min: "0", max: "500", step: "1", value: "10", "aria-label": "Slab thickness in mm", title: "Slab thickness (mm)" });
  const hangingNote = el("span", { id: "hanging", class: "measure-status", title: "The hanging protocol that laid out this study" });
  const priorMenu = el("select", { id: "prior", "aria-label": "Compare with a prior study", title: "The same person's earlier comparable studies, from every hospital", hidden: true },
    el("option", { value: "" }, "Compare with…"));
  const linkScroll = el("input", { type: "checkbox", id: "link-scroll", checked: true });
  const linkLook = el("input", { type: "checkbox", id: "link-look" });
  const links = el("span", { class: "links", hidden: true },
    el("label", { title: "Scroll the current and the prior together: by position in one frame of reference, else by the offset between them when linked (unlink, align, link again to set it)" }, linkScroll, "Link scroll"),
    el("label", { title: "Window and zoom follow from one to the other" }, linkLook, "Link window & zoom"));
  const tools = el("div", { class: "tools" },
    ["1x1", "1x2", "2x2"].map((l) => el("button", { type: "button", "data-layout": l, onclick: () => { layout(l); remember(l, false); } }, l)),
    presetMenu,
    el("button", { type: "button", onclick: () => selected.sendView({ zoom: 1, pan: [0, 0] }) }, "Fit"),
    el("button", { type: "button", onclick: () => reset() }, "Reset"),
    toolMenu,
    cineButton, cineFps,
    mprButton, slabMode, slabMm,
    priorMenu, links,
    el("button", { type: "button", id: "key-image", title: "Mark the slice shown as a key image (saved with the measurements)", onclick: () => markKey() }, "Key image"),
    el("button", { type: "button", id: "save-measurements", onclick: () => saveAll() }, "Save measurements"),
    saveStatus,
    el("button", { type: "button", id: "help-button", onclick: () => { help.hidden = !help.hidden; } }, "?"),
    hangingNote,
    cold === null ? "" : el("span", { id: "cold-note", class: "measure-status" }, `Retrieved from cold storage in ${cold.toFixed(1)} s`),
    mayExport(state.role)
      ? el("a", { href: `/api/export?study=${encodeURIComponent(study)}`, download: `study-${study}.zip`, id: "download",
        title: "The study as DICOM media (DICOMDIR) in a ZIP, with a page of pictures any browser opens" }, "Download study (ZIP)")
      : "");
  main.replaceChildren(el("div", { class: "viewer", id: "viewer" }, thumbs, el("div", { class: "stage" }, tools, grid)), help);

  let viewports = [];
  let selected = null;
  const select = (vp) => {
    selected = vp;
    for (const v of viewports) v.box.classList.toggle("selected", v === vp && viewports.length > 1);
    for (const v of viewports) v.measure.draw();
    for (const f of thumbs.children) f.classList.toggle("active", vp.seriesUid === f.dataset.series);
    cineShown(vp);
  };
  /** The cine button and rate say what the selected viewport does. */
  const cineShown = (vp) => {
    if (vp !== selected) return;
    cineButton.textContent = vp.cine.playing ? "Stop" : "Play";
    cineButton.classList.toggle("active", vp.cine.playing);
    if (vp.cine.playing && document.activeElement !== cineFps) cineFps.value = String(vp.cine.fps);
  };
  const cineRate = () => {
    const f = Number(cineFps.value);
    return cineFps.value && f >= 1 && f <= 60 ? f : null;
  };
  const toggleCine = () => {
    if (!selected) return;
    if (selected.cine.playing) selected.stop();
    else selected.play(cineRate());
  };
  cineFps.addEventListener("change", () => { if (selected && selected.cine.playing) selected.play(cineRate()); });
  const show = (vp, uid) => {
    if (mprOf) { enterMpr(uid); return; }
    if (vp.isPrior) vp = link.current; // the current study's series never replace the prior
    vp.seriesUid = uid; vp.open(study, uid); select(vp);
  };
  /** The reference line: where the selected view's slice crosses this view's (in one frame
   * of reference), kept in `refLines` (image coordinates) as drawn. */
  const drawReference = (vp, g) => {
    vp.refLines = [];
    if (!selected || selected === vp) return;
    const seg = vp.crossing(selected);
    if (!seg) return;
    vp.refLines.push(seg);
    const [a, b] = seg.map((p) => vp.measure.toScreen(p));
    g.strokeStyle = "#ffee58";
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(...a);
    g.lineTo(...b);
    g.stroke();
  };
  const addViewport = () => {
    const vp = new Viewport(grid, select);
    vp.drawExtra = (g) => drawReference(vp, g);
    // its slice moved: its line on the others moves with it
    vp.onView = () => { for (const v of viewports) if (v !== vp) v.measure.draw(); };
    vp.reports = reports;
    vp.measure.tool = toolMenu.value || null;
    vp.onCine = cineShown;
    attachInput(vp);
    viewports.push(vp);
    return vp;
  };
  /** The prior's view goes; the current one scrolls alone again. */
  const dropLink = () => {
    if (!link) return;
    link.current.onSync = null;
    viewports = viewports.filter((v) => (v.isPrior ? (v.close(), false) : true));
    link = null;
    links.hidden = true;
    priorMenu.value = "";
  };
  const layout = (l) => {
    const n = { "1x1": 1, "1x2": 2, "2x2": 4 }[l];
    dropLink();
    if (mprOf) { mprOf = null; while (viewports.length) viewports.pop().close(); }
    mprButton.classList.remove("active");
    grid.className = `grid l${l}`;
    while (viewports.length > n) viewports.pop().close();
    while (viewports.length < n) {
      const vp = addViewport();
      const uid = dv(series[(viewports.length - 1) % series.length], "0020000E");
      show(vp, uid);
    }
    select(viewports[0]);
  };

  // MPR: the series shown as three planes, the crosshair point (patient mm) they share, and
  // the turn of the two planes other than the one whose crosshair was turned.
  let mprOf = null;
  let cross = null;
  let turn = null;
  const mprViews = () => viewports.filter((v) => v.mpr);
  const drawCross = (vp, g) => {
    for (const other of mprViews()) {
      if (other === vp) continue;
      const seg = vp.crossing(other);
      if (!seg) continue;
      const [a, b] = seg.map((p) => vp.measure.toScreen(p));
      g.strokeStyle = { axial: "#4fc3f7", coronal: "#81c784", sagittal: "#ffb74d" }[other.mpr.plane] || "#ccc";
      g.lineWidth = 1;
      g.setLineDash([6, 4]);
      g.beginPath();
      g.moveTo(...a);
      g.lineTo(...b);
      g.stroke();
      g.setLineDash([]);
    }
  };
  /** Moves the crosshair to patient point p: the other views scroll to the slices holding it. */
  const moveCross = (from, p) => {
    cross = p;
    for (const v of mprViews()) if (v !== from && v.series) v.sendView({ slice: v.sliceAt(p) });
  };
  const enterMpr = (uid) => {
    uid = uid || (selected && !selected.isPrior && selected.seriesUid) || (viewports[0] && viewports[0].seriesUid);
    if (!uid) return;
    dropLink();
    while (viewports.length) viewports.pop().close();
    mprOf = uid;
    cross = null;
    turn = null;
    grid.className = "grid l1x3";
    mprButton.classList.add("active");
    for (const plane of ["axial", "coronal", "sagittal"]) {
      const vp = addViewport();
      vp.seriesUid = uid;
      vp.drawExtra = (g) => drawCross(vp, g);
      // another view's slice moved: its line here moves with it
      vp.onView = () => { for (const v of mprViews()) if (v !== vp) v.measure.draw(); };
      vp.onClick = (at) => { const p = vp.patientPoint(at); if (p) moveCross(vp, p); };
      vp.onMpr = () => { if (cross) vp.sendView({ slice: vp.sliceAt(cross) }); };
      vp.open(study, uid, { plane });
    }
    select(viewports[0]);
  };
  const toggleMpr = () => (mprOf ? layout("1x1") : enterMpr());

  // Priors: the same person's earlier comparable studies (a modality in common, not later),
  // from every hospital the person index links; the most recent one opens beside the current
  // study, and the two views scroll together.
  let priors = [];
  let link = null;
  const findPriors = async () => {
    const persons = await api(`/api/persons?study=${encodeURIComponent(study)}`);
    if (!persons.length) return [];
    const person = await api(`/api/persons/${encodeURIComponent(persons[0].id)}`);
    const here = person.studies.find((s) => s.study_uid === study);
    const mods = new Set(series.map((s) => dv(s, "00080060")));
    return person.studies
      .filter((s) => s.study_uid !== study
        && !(here && here.study_date && s.study_date && s.study_date > here.study_date)
        && (s.modalities || "").split(/[\\,\s]+/).some((m) => mods.has(m)))
      .sort((a, b) => (b.study_date || "").localeCompare(a.study_date || ""));
  };
  const positionOf = (vp, slice) => {
    const p = vp.series && vp.series.positions ? vp.series.positions[slice] : null;
    return typeof p === "number" ? p : null;
  };
  const nearestSlice = (vp, pos) => {
    let best = null;
    vp.series.positions.forEach((p, i) => {
      if (typeof p === "number" && (best === null || Math.abs(p - pos) < Math.abs(vp.series.positions[best] - pos))) best = i;
    });
    return best;
  };
  /** The offset from the current view's positions to the prior's: none in one frame of
   * reference, else what lies between the slices shown when the link is made. */
  const linkOffset = () => {
    if (link.offset !== null) return link.offset;
    const [a, b] = [link.current, link.prior];
    if (!a.series || !b.series) return null;
    const same = a.series.frame_of_reference && a.series.frame_of_reference === b.series.frame_of_reference;
    const pa = positionOf(a, a.view.slice);
    const pb = positionOf(b, b.view.slice);
    if (!same && (pa === null || pb === null)) return null;
    link.offset = same ? 0 : pb - pa;
    link.byPosition = same;
    b.linkNote = same ? "Prior · linked by position" : `Prior · linked, offset ${link.offset >= 0 ? "+" : ""}${link.offset.toFixed(1)} mm`;
    b.drawOverlays();
    return link.offset;
  };
  const syncFrom = (src, change) => {
    if (!link || (src !== link.current && src !== link.prior)) return;
    const dst = src === link.current ? link.prior : link.current;
    if (!src.series || !dst.series) return;
    if (linkScroll.checked && change.slice !== undefined) {
      const offset = linkOffset();
      const p = positionOf(src, src.view.slice);
      if (offset !== null && p !== null) {
        const k = nearestSlice(dst, src === link.current ? p + offset : p - offset);
        if (k !== null && k !== dst.view.slice) dst.sendView({ slice: k }, true);
      }
    }
    if (linkLook.checked && (change.window !== undefined || change.preset !== undefined || change.zoom !== undefined)) {
      dst.sendView({ window: src.view.window, preset: src.view.preset, zoom: src.view.zoom }, true);
    }
  };
  linkScroll.addEventListener("change", () => {
    // unlinked, the reader aligns the two; linked again, that alignment is the offset
    if (!link) return;
    link.offset = null;
    link.prior.linkNote = linkScroll.checked ? null : "Prior · not linked";
    if (linkScroll.checked) linkOffset();
    link.prior.drawOverlays();
  });
  /** Opens `prior` (a study of the person) beside the current series: its series of the same
   * modality and description, else of the same modality. */
  const openPrior = async (prior) => {
    const q = ["0008103E", "00200011", "00080060"].map((t) => `includefield=${t}`).join("&");
    const list = await api(`/dicomweb/studies/${prior.study_uid}/series?${q}`, { headers: { Accept: "application/dicom+json" } });
    if (mprOf) layout("1x1");
    const current = viewports[0];
    const here = series.find((s) => dv(s, "0020000E") === current.seriesUid) || series[0];
    const same = (s, t) => dv(s, t) === dv(here, t);
    const pick = list.find((s) => same(s, "00080060") && same(s, "0008103E")) || list.find((s) => same(s, "00080060")) || list[0];
    if (!pick) return;
    while (viewports.length > 1) viewports.pop().close();
    grid.className = "grid l1x2";
    const vp = addViewport();
    vp.isPrior = true;
    vp.seriesUid = dv(pick, "0020000E");
    vp.linkNote = "Prior";
    vp.open(prior.study_uid, vp.seriesUid);
    link = { current, prior: vp, offset: null };
    current.onSync = syncFrom;
    vp.onSync = syncFrom;
    // linked once both series are known, at the slices they show then
    vp.onSeries = () => { if (link && link.prior === vp) { link.offset = null; if (linkScroll.checked) linkOffset(); } };
    links.hidden = false;
    priorMenu.value = prior.study_uid;
    select(current);
  };
  priorMenu.addEventListener("change", () => {
    const p = priors.find((x) => x.study_uid === priorMenu.value);
    if (p) {
      openPrior(p).catch((err) => failed("Prior study", err));
      remember("1x2", true);
    } else {
      layout("1x1");
      remember("1x1", false);
    }
  });

  // Hanging protocols: the reader's own layout for this kind of study (its modality, or
  // modality and body part), else the archive's first matching rule, else one viewport.
  const modalities = new Set(series.map((s) => dv(s, "00080060")).filter(Boolean));
  const bodyParts = new Set(series.map((s) => (dv(s, "00180015") || "").toUpperCase()).filter(Boolean));
  const modality = dv(series[0], "00080060") || "";
  const bodyPart = [...bodyParts][0] || "";
  const kinds = bodyPart ? [`${modality}/${bodyPart}`, modality] : [modality];
  /** The reader's choice, remembered for this kind of study (the most specific one). */
  const remember = (l, prior) => {
    hangingNote.textContent = "Layout: yours";
    api("/api/viewer/layouts", { method: "PUT", body: { kind: kinds[0], layout: l, prior } })
      .catch((err) => failed("Remembering the layout", err));
  };
  const chooseLayout = (layouts) => {
    const mine = kinds.map((k) => layouts.mine.find((m) => m.kind === k)).find(Boolean);
    if (mine) return { name: "yours", layout: mine.layout, prior: mine.prior };
    const has = (d) => series.find((s) => (dv(s, "0008103E") || "").toLowerCase().includes(d.toLowerCase()));
    const rule = layouts.rules.find((r) => (!r.modalities.length || r.modalities.some((m) => modalities.has(m)))
      && (!r.body_part || bodyParts.has(r.body_part.toUpperCase()))
      && (!r.series_description || has(r.series_description)));
    if (!rule) return { name: "one viewport", layout: "1x1", prior: false };
    return { name: rule.name, layout: rule.layout, prior: rule.prior, first: rule.series_description ? has(rule.series_description) : null };
  };
  const hang = async () => {
    // a patient, say, may not search the person index: then there are no priors to offer
    const [layouts, found] = await Promise.all([api("/api/viewer/layouts"), findPriors().catch(() => [])]);
    priors = found;
    if (priors.length) {
      priorMenu.append(...priors.map((p) => el("option", { value: p.study_uid },
        `${da(p.study_date)} ${p.modalities} ${p.description || ""} (${p.issuer} ${p.patient_id})`)));
      priorMenu.hidden = false;
    }
    const chosen = chooseLayout(layouts);
    hangingNote.textContent = `Layout: ${chosen.name}`;
    hangingNote.dataset.layout = chosen.layout;
    if (chosen.first) {
      // the rule's series goes first
      const i = series.indexOf(chosen.first);
      series.splice(i, 1);
      series.unshift(chosen.first);
      const uid = dv(chosen.first, "0020000E");
      if (viewports[0] && viewports[0].seriesUid !== uid) show(viewports[0], uid);
    }
    // a rule's place for the prior stays empty without one: the study alone
    if (chosen.prior) { if (priors.length) await openPrior(priors[0]); }
    else if (chosen.layout !== "1x1") layout(chosen.layout);
  };
  /** Turns the two planes other than the selected one about its normal by `step` degrees. */
  const turnPlanes = (step) => {
    if (!mprOf || !selected || !selected.series || !selected.series.mpr) return;
    const axis = selected.series.mpr.normal;
    if (!turn || turn.view !== selected) turn = { view: selected, degrees: 0 };
    turn.degrees = Math.round((turn.degrees + step) * 10) / 10;
    for (const v of mprViews()) {
      if (v === selected) continue;
      const rotate = turn.degrees ? { axis, degrees: turn.degrees } : undefined;
      v.open(study, mprOf, rotate ? { plane: v.mpr.plane, rotate } : { plane: v.mpr.plane }, true);
    }
  };
  const slabChanged = () => {
    if (!selected || !selected.mpr) return;
    const mm = Number(slabMm.value);
    selected.sendView({ slab: slabMode.value && mm > 0 ? { thickness: mm, mode: slabMode.value } : null });
  };
  slabMode.addEventListener("change", slabChanged);
  slabMm.addEventListener("change", slabChanged);
  const reset = () => selected.sendView({ zoom: 1, pan: [0, 0], window: null, preset: null });
  const setTool = (tool) => {
    toolMenu.value = tool || "";
    for (const v of viewports) { v.measure.tool = tool || null; v.measure.drawing = null; v.measure.draw(); }
  };
  toolMenu.addEventListener("change", () => setTool(toolMenu.value));
  /** Key images marked and not saved yet: (series, instance, frame). */
  let keyImages = [];
  const markKey = () => {
    const here = selected && selected.measure.current();
    if (!here || !here.instance || selected.isPrior || keyImages.some((k) => k.instance === here.instance && k.frame === here.frame)) return;
    keyImages.push({ series: here.series, instance: here.instance, frame: here.frame });
    saveStatus.textContent = `${keyImages.length} key image(s) marked`;
  };
  /** Every measurement not saved yet, of every viewport, as one Measurement Report, and the
   * key images marked as a Key Object Selection. */
  const saveAll = async () => {
    // this study's report holds this study's images, not the prior's; measurements on MPR
    // planes are kept in the patient (SCOORD3D)
    const items = viewports.filter((v) => !v.isPrior).flatMap((v) => v.measure.items.filter((i) => i.answer && !i.saved));
    if (!items.length && !keyImages.length) { saveStatus.textContent = "Nothing to save"; return; }
    saveStatus.textContent = "Saving…";
    try {
      const measurements = items.map(forReport);
      const saved = await api("/api/reports", { method: "POST", body: { study, measurements, key_images: keyImages } });
      for (const i of items) i.saved = true;
      for (const v of viewports) v.measure.draw();
      saveStatus.textContent = `Saved ${items.length} measurement(s), ${keyImages.length} key image(s)`;
      keyImages = [];
      if (saved.report) saveStatus.dataset.report = saved.report.instance;
    } catch (err) {
      saveStatus.textContent = `Not saved: ${err.message}`;
    }
  };
  let reports = null;
  api(`/api/reports?study=${encodeURIComponent(study)}`).then((r) => {
    reports = r.reports;
    for (const v of viewports) { v.reports = reports; v.showReports(); }
  }).catch((err) => failed("Saved measurements", err));

  for (const s of series) {
    const uid = dv(s, "0020000E");
    thumbs.append(el("figure", { "data-series": uid, onclick: () => show(selected, uid) },
      el("img", {
        src: `/dicomweb/studies/${study}/series/${uid}/thumbnail`, alt: dv(s, "0008103E") || "series", loading: "lazy",
        onerror: (e) => e.target.replaceWith(el("div", { class: "no-thumb" }, "no preview")),
      }),
      el("figcaption", {}, `${dv(s, "00080060")} #${dv(s, "00200011")} ${dv(s, "0008103E")} (${dv(s, "00201209")})`)));
  }
  presetMenu.addEventListener("change", () => {
    if (presetMenu.value) selected.sendView({ preset: presetMenu.value, window: null });
    presetMenu.value = "";
  });
  const keydown = (e) => {
    if (!selected || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    const k = e.key;
    if (k === "ArrowDown" || k === "ArrowRight") selected.scroll(1);
    else if (k === "ArrowUp" || k === "ArrowLeft") selected.scroll(-1);
    else if (k === "PageDown") selected.scroll(10);
    else if (k === "PageUp") selected.scroll(-10);
    else if (k === "Home") selected.scroll(-1e9);
    else if (k === "End") selected.scroll(1e9);
    else if (k >= "1" && k <= "7") selected.sendView({ preset: PRESETS[Number(k) - 1][0], window: null });
    else if (k === "0") selected.sendView({ preset: "default", window: null });
    else if (k === "+" || k === "=") selected.zoomBy(1.25);
    else if (k === "-") selected.zoomBy(0.8);
    else if (k === "f" || k === "F") selected.sendView({ zoom: 1, pan: [0, 0] });
    else if (k === "r" || k === "R") reset();
    else if (k === "l" || k === "L") {
      const next = mprOf ? "1x1" : { 1: "1x2", 2: "2x2", 4: "1x1" }[viewports.length];
      layout(next);
      remember(next, false);
    }
    else if (k === "c" || k === "C") toggleCine();
    else if (k === "m" || k === "M") toggleMpr();
    else if (k === "[") turnPlanes(-5);
    else if (k === "]") turnPlanes(5);
    else if (k === "Tab") select(viewports[(viewports.indexOf(selected) + 1) % viewports.length]);
    else if (k === "?") help.hidden = !help.hidden;
    else if (k === "Escape") setTool(null);
    else return;
    e.preventDefault();
  };
  document.addEventListener("keydown", keydown);
  layout("1x1");
  hang().catch((err) => failed("Laying out the study", err));
  return () => {
    document.removeEventListener("keydown", keydown);
    for (const v of viewports) v.close();
    viewports = [];
  };
}

/** Mouse, wheel and touch on one viewport. */
function attachInput(vp) {
  const box = vp.box;
  box.addEventListener("contextmenu", (e) => e.preventDefault());
  box.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey) vp.zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1);
    else vp.scroll(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  let drag = null;
  box.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "touch") return;
    if (vp.measure.down(e)) {
      box.setPointerCapture(e.pointerId);
      e.preventDefault();
      return;
    }
    const mode = e.button === 2 || e.shiftKey ? "window" : e.button === 1 || e.altKey ? "pan" : e.ctrlKey ? "zoom" : "scroll";
    drag = { mode, x: e.clientX, y: e.clientY, acc: 0, moved: 0 };
    box.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  box.addEventListener("pointermove", (e) => {
    if (vp.measure.move(e) || !drag) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    drag.moved += Math.abs(dx) + Math.abs(dy);
    drag.x = e.clientX;
    drag.y = e.clientY;
    if (drag.mode === "window") vp.windowBy(dx, dy);
    else if (drag.mode === "pan") {
      const dpr = window.devicePixelRatio || 1;
      vp.sendView({ pan: [vp.view.pan[0] + dx * dpr, vp.view.pan[1] + dy * dpr] });
    } else if (drag.mode === "zoom") vp.zoomBy(Math.exp(-dy / 200));
    else {
      drag.acc += dy;
      const steps = Math.trunc(drag.acc / 4);
      if (steps) { drag.acc -= steps * 4; vp.scroll(steps); }
    }
  });
  const end = () => { drag = null; };
  box.addEventListener("pointerup", (e) => {
    if (vp.measure.up(e)) return;
    // a click without a drag, in an MPR view: the crosshair moves there
    if (drag && drag.mode === "scroll" && drag.moved < 3 && vp.onClick && vp.measure.placement()) {
      vp.onClick(vp.measure.toImage(e.clientX, e.clientY));
    }
    end();
  });
  box.addEventListener("pointercancel", end);

  // Touch: one finger swipes through slices, two fingers pinch to zoom and move to pan.
  let touch = null;
  const spread = (t) => Math.hypot(t[0].clientX - t[1].clientX, t[0].clientY - t[1].clientY);
  const mid = (t) => [(t[0].clientX + t[1].clientX) / 2, (t[0].clientY + t[1].clientY) / 2];
  box.addEventListener("touchstart", (e) => {
    e.preventDefault();
    const t = e.touches;
    touch = t.length >= 2 ? { spread: spread(t), mid: mid(t) } : { y: t[0].clientY, acc: 0 };
  }, { passive: false });
  box.addEventListener("touchmove", (e) => {
    e.preventDefault();
    const t = e.touches;
    if (!touch) return;
    if (t.length >= 2 && touch.spread) {
      const s = spread(t);
      const m = mid(t);
      const dpr = window.devicePixelRatio || 1;
      vp.sendView({
        zoom: Math.max(0.05, Math.min(50, vp.view.zoom * (s / touch.spread))),
        pan: [vp.view.pan[0] + (m[0] - touch.mid[0]) * dpr, vp.view.pan[1] + (m[1] - touch.mid[1]) * dpr],
      });
      touch = { spread: s, mid: m };
    } else if (t.length === 1 && touch.y !== undefined) {
      touch.acc += t[0].clientY - touch.y;
      touch.y = t[0].clientY;
      const steps = Math.trunc(touch.acc / 8);
      if (steps) { touch.acc -= steps * 8; vp.scroll(-steps); }
    }
  }, { passive: false });
  box.addEventListener("touchend", (e) => { if (!e.touches.length) touch = null; });
}
