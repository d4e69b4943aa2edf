// Measuring in the viewer, in chromium, against the running binary, on phantoms whose geometry
// and values are known (tests/measure.rs): a length between two markers, an ellipse on a disk,
// a probe, each drawn with the mouse on the canvas and answered by the server; the answers kept
// through zoom and window changes; saved as a report; shown again when the study is reopened.
// Prints `result: {...}` with what the labels said, for the Rust side to check against the
// truth. Screenshots go to $OUT.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, OUT, STUDY, and GEOMETRY: JSON of
// {disk_slice, marker_slice, marker_a, marker_b, disk_centre, disk_radius_px} in image
// coordinates.

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const STUDY = env("STUDY");
const G = JSON.parse(env("GEOMETRY"));
const { context, close } = await launch();
let page;
const shot = shooter(env("OUT"), () => page, "measure-");

/** Client coordinates of image point `p` in the first viewport, as the viewer places it. */
const onScreen = (p) => page.evaluate((pt) => {
  const m = window.strata.viewports[0].measure;
  const r = m.vp.box.getBoundingClientRect();
  const [x, y] = m.toScreen(pt);
  return [r.left + x, r.top + y];
}, p);

/** Goes to slice `n` (0-based) and waits for its lossless frame. */
async function slice(n) {
  await page.evaluate((s) => window.strata.viewports[0].sendView({ slice: s }), n);
  await page.waitForFunction((s) => {
    const v = window.strata.viewports[0];
    return v.stats.slice === s && v.stats.lastSeq >= v.seq;
  }, n, { timeout: 15000 });
}

/** Drags from image point a to b with the left button. */
async function drag(a, b) {
  const [x0, y0] = await onScreen(a);
  const [x1, y1] = await onScreen(b);
  await page.mouse.move(x0, y0);
  await page.mouse.down();
  await page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, { steps: 4 });
  await page.mouse.move(x1, y1, { steps: 4 });
  await page.mouse.up();
}

/** The labels shown, as [kind, value, text, saved]. */
const labels = () => page.$$eval(".viewport >> nth=0 >> .measure-label",
  (ls) => ls.map((l) => [l.dataset.kind, Number(l.dataset.value), l.textContent, l.dataset.saved === "1"]));

/** Waits until `count` labels hold a value, and returns them. */
async function answered(count) {
  await page.waitForFunction((n) => {
    const ls = [...document.querySelectorAll(".viewport .measure-label")];
    return ls.length >= n && ls.every((l) => l.dataset.value !== "");
  }, count, { timeout: 15000 });
  return labels();
}

const result = {};
try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => window.strata.viewports.length && window.strata.viewports[0].series, null, { timeout: 15000 });

  // a length between the markers
  await slice(G.marker_slice);
  await page.selectOption("#tool", "length");
  await drag(G.marker_a, G.marker_b);
  let shown = await answered(1);
  result.length = shown[0][1];
  result.length_text = shown[0][2];
  check(shown[0][0] === "length" && shown[0][2].includes("mm"), `a length is answered in mm: ${shown[0][2]}`);
  result.latency_ms = await page.evaluate(() => window.strata.viewports[0].measure.items.at(-1).ms);
  await shot("length");

  // an ellipse on the disk, a probe at its centre
  await slice(G.disk_slice);
  check((await labels()).length === 0, "another slice shows no measurement of the first");
  const [cx, cy] = G.disk_centre;
  const r = G.disk_radius_px;
  await page.selectOption("#tool", "ellipse");
  await drag([cx - r, cy - r], [cx + r, cy + r]);
  await answered(1);
  await page.selectOption("#tool", "probe");
  const [px, py] = await onScreen([cx + 0.5, cy + 0.5]);
  await page.mouse.click(px, py);
  shown = await answered(2);
  const ellipse = shown.find((l) => l[0] === "ellipse");
  const probe = shown.find((l) => l[0] === "probe");
  result.ellipse_mean = ellipse[1];
  result.ellipse_text = ellipse[2];
  result.probe = probe[1];
  result.ellipse_area = await page.evaluate(() =>
    window.strata.viewports[0].measure.items.find((i) => i.kind === "ellipse").answer.region.area);
  check(ellipse[2].includes("Mean") && ellipse[2].includes("mm²"), `an ellipse shows its statistics: ${ellipse[2]}`);
  await shot("ellipse-probe");

  // zoom and window: the geometry stays on the image, the answers stay
  const lefts = () => page.$$eval(".viewport >> nth=0 >> .measure-label", (ls) => ls.map((l) => parseFloat(l.style.left)));
  const before = await lefts();
  const edge = await onScreen([cx + r, cy]);
  await page.evaluate(() => window.strata.viewports[0].sendView({ zoom: 2, window: { center: 40, width: 80 }, preset: null }));
  await page.waitForTimeout(300);
  const after = await lefts();
  const zoomedEdge = await onScreen([cx + r, cy]);
  check((await labels()).length === 2, "zoom and window keep the measurements");
  check(after.length === 2 && Math.max(...after) > Math.max(...before) + 10 && zoomedEdge[0] > edge[0] + 10,
    `the geometry and its labels follow the zoomed image (${before} → ${after})`);
  await shot("zoomed");
  await page.evaluate(() => window.strata.viewports[0].sendView({ zoom: 1, pan: [0, 0] }));

  // the disk's slice marked as a key image; save, then reopen: the saved measurements come
  // back from the report
  await page.click("#key-image");
  check((await page.textContent("#measure-status")).includes("1 key image"), "a key image is marked");
  await page.click("#save-measurements");
  await page.waitForFunction(() => document.querySelector("#measure-status").dataset.report, null, { timeout: 15000 });
  result.report = await page.evaluate(() => document.querySelector("#measure-status").dataset.report);
  check((await labels()).every((l) => l[3]), "saved measurements are marked saved");
  await page.goto(`${BASE}/#/studies`);
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => window.strata.viewports.length && window.strata.viewports[0].series, null, { timeout: 15000 });
  await slice(G.disk_slice);
  shown = await answered(2);
  result.reopened_disk = shown.map((l) => [l[0], l[1], l[3]]);
  await slice(G.marker_slice);
  shown = await answered(1);
  result.reopened_markers = shown.map((l) => [l[0], l[1], l[3]]);
  check(shown[0][3], "the reopened study shows the saved length");
  await shot("reopened");

  // from release of the mouse to the answer: ROI statistics of the 512² disk slice, 11 times
  await slice(G.disk_slice);
  await page.selectOption("#tool", "ellipse");
  for (let k = 0; k < 11; k++) {
    await drag([cx - r + k, cy - r], [cx + r - k, cy + r]);
    await page.waitForFunction((n) => window.strata.viewports[0].measure.items.filter((i) => i.ms).length >= n, k + 1, { timeout: 15000 });
  }
  const times = await page.evaluate(() => window.strata.viewports[0].measure.items
    .filter((i) => i.kind === "ellipse" && !i.fromReport && i.ms).map((i) => i.ms).sort((a, b) => a - b));
  result.roi_ms = times;
  result.roi_p50_ms = times[Math.floor(times.length / 2)];
  console.log(`result: ${JSON.stringify(result)}`);
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
