// MPR in the viewer, in chromium, against the running binary, on a phantom volume whose
// geometry is known (tests/mpr.rs): the three planes open, the crosshair moves the other views,
// the sphere's edges are found with the probe (the server's values on the reformatted plane)
// and its diameter drawn with the length tool in the coronal and sagittal views and in an
// oblique plane; a MIP slab shows a bright point a thin slice misses. Prints `result: {...}`
// for the Rust side to check against the truth. Screenshots go to $OUT.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, OUT, STUDY, and GEOMETRY: JSON of
// {series, sphere_centre, sphere_hu, air_hu, point, point_hu} in patient coordinates (mm).

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const STUDY = env("STUDY");
const G = JSON.parse(env("GEOMETRY"));
const { context, close } = await launch({ width: 1500, height: 700 });
let page;
const shot = shooter(env("OUT"), () => page, "mpr-");
const MID = (G.sphere_hu + G.air_hu) / 2;

/** Waits until viewport n shows the lossless still of its newest view of an MPR plane. */
async function settled(n) {
  await page.waitForFunction((k) => {
    const v = window.strata.viewports[k];
    return v && v.series && v.series.mpr && v.stats.lossless && v.stats.lastSeq >= v.seq && v.stats.slice === v.view.slice;
  }, n, { timeout: 30000 });
}

/** Image coordinates, in viewport n's plane, of patient point p. */
const toImage = (n, p) => page.evaluate(([k, pt]) => {
  const m = window.strata.viewports[k].series.mpr;
  const q = [0, 1, 2].map((i) => pt[i] - m.corner[i]);
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  return [dot(q, m.across) / m.pixel_mm, dot(q, m.down) / m.pixel_mm];
}, [n, p]);

/** Client coordinates of image point `p` in viewport n. */
const onScreen = (n, p) => page.evaluate(([k, pt]) => {
  const m = window.strata.viewports[k].measure;
  const r = m.vp.box.getBoundingClientRect();
  const [x, y] = m.toScreen(pt);
  return [r.left + x, r.top + y];
}, [n, p]);

/** Scrolls viewport n to the slice holding patient point p, and waits for its still. */
async function goTo(n, p) {
  await page.evaluate(([k, pt]) => {
    const v = window.strata.viewports[k];
    v.sendView({ slice: v.sliceAt(pt) });
  }, [n, p]);
  await settled(n);
}

/** Clicks patient point p in the axial view: the coronal and sagittal views move to the
 * slices holding it; waits for their stills. */
async function crossAt(p) {
  const [x, y] = await onScreen(0, await toImage(0, p));
  await page.mouse.click(x, y);
  for (const n of [1, 2]) {
    await page.waitForFunction(([k, q]) => {
      const v = window.strata.viewports[k];
      return v.view.slice === v.sliceAt(q);
    }, [n, p], { timeout: 15000 });
    await settled(n);
  }
}

/** The server's value at image point `at` of the plane viewport n shows (its slice and slab). */
const probe = (n, at) => page.evaluate(async ([k, pt]) => {
  const here = window.strata.viewports[k].measure.current();
  const r = await fetch("/api/measure", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ study: here.study, series: here.series, mpr: here.mpr, kind: "probe", points: [pt] }),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`probe: ${JSON.stringify(j)}`);
  return j.value;
}, [n, at]);

/** How far from image point c along unit direction d the sphere's surface lies, in pixels:
 * the last pixel inside is found by bisection, then the crossing of the half-way value between
 * it and the next. */
async function edge(n, c, d) {
  const at = (k) => [c[0] + d[0] * k, c[1] + d[1] * k];
  let lo = 0;
  let hi = 60;
  // the far end stays on the image
  const [w, h] = await page.evaluate((k) => [window.strata.viewports[k].series.columns, window.strata.viewports[k].series.rows], n);
  const inside = ([x, y]) => x > 0 && y > 0 && x < w && y < h;
  while (!inside(at(hi))) hi -= 1;
  check((await probe(n, at(lo))) > MID && (await probe(n, at(hi))) < MID, "the probe starts inside and ends outside the sphere");
  while (hi - lo > 1) {
    const m = Math.floor((lo + hi) / 2);
    if ((await probe(n, at(m))) > MID) lo = m; else hi = m;
  }
  const vin = await probe(n, at(lo));
  const vout = await probe(n, at(hi));
  return lo + (vin - MID) / (vin - vout);
}

/** Drags from image point a to b in viewport n with the left button. */
async function drag(n, a, b) {
  const [x0, y0] = await onScreen(n, a);
  const [x1, y1] = await onScreen(n, b);
  await page.mouse.move(x0, y0);
  await page.mouse.down();
  await page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, { steps: 4 });
  await page.mouse.move(x1, y1, { steps: 4 });
  await page.mouse.up();
}

/** The answer to the newest measurement of viewport n, once it has come. */
async function lastAnswer(n, count) {
  await page.waitForFunction(([k, c]) => {
    const items = window.strata.viewports[k].measure.items;
    return items.length >= c && items[c - 1].answer;
  }, [n, count], { timeout: 15000 });
  return page.evaluate(([k, c]) => window.strata.viewports[k].measure.items[c - 1].answer, [n, count]);
}

const itemCount = (n) => page.evaluate((k) => window.strata.viewports[k].measure.items.length, n);

/** The sphere's diameter across (d = [1, 0]) or down ([0, 1]) viewport n, drawn with the length
 * tool between the edges the probe found. */
async function diameter(n, d) {
  const c = await toImage(n, G.sphere_centre);
  const e1 = await edge(n, c, [-d[0], -d[1]]);
  const e2 = await edge(n, c, d);
  await page.selectOption("#tool", "length");
  const before = await itemCount(n);
  await drag(n, [c[0] - d[0] * e1, c[1] - d[1] * e1], [c[0] + d[0] * e2, c[1] + d[1] * e2]);
  const a = await lastAnswer(n, before + 1);
  check(a.kind === "length" && a.unit === "mm", `a length in mm: ${JSON.stringify(a)}`);
  return a.value;
}

const result = {};
try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => window.strata.viewports.length && window.strata.viewports[0].series, null, { timeout: 15000 });

  // the three planes, and how long until each shows its first reformatted frame
  const clicked = await page.evaluate(() => performance.now());
  await page.click("#mpr");
  for (const n of [0, 1, 2]) await settled(n);
  const planes = await page.evaluate(() => window.strata.viewports.map((v) => v.series.mpr.plane));
  check(JSON.stringify(planes) === JSON.stringify(["axial", "coronal", "sagittal"]), `three planes: ${planes}`);
  result.first_frame_ms = await page.evaluate((t0) => Math.max(...window.strata.viewports.map((v) => v.stats.paintedAt[0] - t0)), clicked);
  // each plane's first frame, the view sent with its opening, is its middle slice
  result.first_slices = await page.evaluate(() => window.strata.viewports.map((v) => v.stats.paintedSlices[0] === Math.floor(v.series.slices / 2)));
  check(await page.locator(".viewport .badge.lossless").count() === 3, "each plane settles lossless");
  // the first plane opened was shown from the coarse volume while the whole one was built; each
  // settled on the whole one
  result.previews = await page.evaluate(() => window.strata.previews || 0);
  result.complete = await page.evaluate(() => window.strata.viewports.map((v) => v.series.mpr.complete));
  await shot("opened");

  // the crosshair: a click in the axial view moves the coronal and sagittal views to that point
  await page.selectOption("#tool", "");
  const off = [10, -5, 0];
  await goTo(0, off);
  const [cx, cy] = await onScreen(0, await toImage(0, off));
  await page.mouse.click(cx, cy);
  await page.waitForFunction((p) => {
    const [, c, s] = window.strata.viewports;
    return c.view.slice === c.sliceAt(p) && s.view.slice === s.sliceAt(p);
  }, off, { timeout: 15000 }).catch(() => {});
  result.crosshair = await page.evaluate((p) => window.strata.viewports.slice(1).map((v) => v.view.slice === v.sliceAt(p)), off);
  await shot("crosshair");
  // then to the sphere's centre
  await crossAt(G.sphere_centre);

  // the sphere's diameter in the coronal and sagittal views, across and down
  result.coronal_across = await diameter(1, [1, 0]);
  result.coronal_down = await diameter(1, [0, 1]);
  result.sagittal_across = await diameter(2, [1, 0]);
  result.sagittal_down = await diameter(2, [0, 1]);
  await shot("measured");
  // saved in a Measurement Report of the study, in the patient (SCOORD3D)
  await page.click("#save-measurements");
  await page.waitForFunction(() => /^(Saved|Not saved)/.test(document.querySelector("#measure-status").textContent), null, { timeout: 30000 });
  result.save_status = await page.textContent("#measure-status");

  // oblique: the axial view selected, its crosshair turned 5°: coronal and sagittal turn
  await page.selectOption("#tool", "");
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  while (await page.evaluate(() => !window.strata.viewports[0].box.classList.contains("selected"))) await page.keyboard.press("Tab");
  await page.keyboard.press("]");
  await page.waitForFunction(() => {
    const v = window.strata.viewports[1];
    return v.series && v.series.mpr && v.series.mpr.rotate && v.series.mpr.rotate.degrees === 5;
  }, null, { timeout: 15000 });
  await page.waitForFunction((p) => {
    const v = window.strata.viewports[1];
    return v.view.slice === v.sliceAt(p);
  }, G.sphere_centre, { timeout: 15000 });
  await settled(1);
  result.oblique_degrees = await page.evaluate(() => window.strata.viewports[1].series.mpr.rotate.degrees);
  result.oblique_across = await diameter(1, [1, 0]);
  await shot("oblique");

  // a slab: 6 mm from the point a thin axial slice misses it; a 16 mm MIP shows it
  await page.selectOption("#tool", "");
  while (await page.evaluate(() => !window.strata.viewports[0].box.classList.contains("selected"))) await page.keyboard.press("Tab");
  const beside = [G.point[0], G.point[1], G.point[2] + 6];
  await goTo(0, beside);
  const pointAt = await toImage(0, G.point);
  const [px, py] = await onScreen(0, pointAt);
  await page.selectOption("#tool", "probe");
  let count = await itemCount(0);
  await page.mouse.click(px, py);
  result.thin_probe = (await lastAnswer(0, count + 1)).value;
  await page.fill("#slab-mm", "16");
  await page.selectOption("#slab-mode", "mip");
  await page.waitForFunction(() => {
    const v = window.strata.viewports[0];
    return v.view.slab && v.view.slab.mode === "mip" && v.view.slab.thickness === 16;
  }, null, { timeout: 15000 });
  await settled(0);
  count = await itemCount(0);
  await page.mouse.click(px, py);
  result.mip_probe = (await lastAnswer(0, count + 1)).value;
  check(await page.locator(".viewport >> nth=0 >> .overlay.bl").textContent().then((t) => t.includes("MIP 16 mm")),
    "the overlay says the slab");
  await shot("mip");
  await page.selectOption("#slab-mode", "minip");
  await page.waitForFunction(() => window.strata.viewports[0].view.slab && window.strata.viewports[0].view.slab.mode === "minip", null, { timeout: 15000 });
  await settled(0);
  count = await itemCount(0);
  await page.mouse.click(px, py);
  result.minip_probe = (await lastAnswer(0, count + 1)).value;

  // reopened: the saved measurements are drawn again on the plane slices they were made on
  await page.goto(`${BASE}/#/studies`);
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => window.strata.viewports.length && window.strata.viewports[0].series, null, { timeout: 15000 });
  await page.click("#mpr");
  for (const n of [0, 1, 2]) await settled(n);
  await crossAt(G.sphere_centre);
  await page.waitForFunction(() => window.strata.viewports.slice(1).every((v) => v.measure.items.some((i) => i.fromReport)), null, { timeout: 15000 });
  result.reopened = await page.evaluate(() => window.strata.viewports.slice(1).map((v) => {
    const here = v.measure.current().key;
    return v.measure.items.filter((i) => i.fromReport && i.key === here).map((i) => [i.kind, i.answer.value]);
  }));
  result.reopened_labels = await page.locator(".viewport .measure-label[data-saved='1']").count();
  await shot("reopened");

  // leaving MPR gives back the series' own slices
  await page.click("#mpr");
  await page.waitForFunction(() => window.strata.viewports.length === 1 && window.strata.viewports[0].series
    && !window.strata.viewports[0].series.mpr, null, { timeout: 15000 });
  console.log(`result: ${JSON.stringify(result)}`);
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
