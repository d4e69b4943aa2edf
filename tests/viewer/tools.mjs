// The study list and the viewer's tools, in chromium, against the running binary: every search
// field, sorting, paging; thumbnails, drag scrolling, window/level by right-drag and by menu,
// zoom, pan, fit, reset, the help panel, the three layouts with independent series; logging
// out; the review queue for an admin; a patient's own studies, record and download. Screenshots
// of each step go to $OUT.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, ADMIN_USER/ADMIN_PASSWORD, PATIENT_USER/
// PATIENT_PASSWORD, OUT, and EXPECT: JSON of what the archive holds (see tests/viewer.rs:
// `total`, `pid`, `modality`, `range`, `accession`, `ct`, `patient`).

import { check, differ, env, launch, login, shooter, viewportPixels } from "./lib.mjs";

const BASE = env("BASE");
const EXPECT = JSON.parse(env("EXPECT"));
const { context, close } = await launch();
let page;
const shot = shooter(env("OUT"), () => page, "tools-");
const vp = (n = 0) => page.evaluate((i) => {
  const v = window.strata.viewports[i];
  return v && { view: v.view, slice: v.stats.slice, frames: v.stats.frames, series: v.seriesUid };
}, n);
const listed = () => page.$$eval("#studies tbody tr[data-study]", (rows) => rows.map((r) => r.dataset.study));
const same = (a, b) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** Searches with only what `fill` enters in the form; returns the studies listed. */
async function search(fill) {
  for (const f of ["name", "pid", "acc", "from", "to"]) await page.fill(`input[name=${f}]`, "");
  await page.selectOption("select[name=mod]", "");
  await fill();
  await page.evaluate(() => { document.querySelector("#studies").dataset.old = "1"; });
  await page.click("form#search button[type=submit]");
  await page.waitForSelector("#studies:not([data-old]) ~ .pager span");
  return listed();
}

/** Waits until viewport `n` painted more than `frames` frames. */
const painted = (n, frames = 0) => page.waitForFunction(([i, f]) => {
  const v = window.strata.viewports[i];
  return v && v.stats.frames > f;
}, [n, frames], { timeout: 15000 });

/** Does `action` on the first viewport, then waits for the frame of its last view and that
 * frame's lossless still. */
async function settled(action) {
  await action();
  await page.waitForFunction(() => {
    const v = window.strata.viewports[0];
    return v.stats.lastSeq >= v.seq;
  }, null, { timeout: 10000 });
  await page.waitForSelector(".viewport >> nth=0 >> .badge.lossless", { timeout: 10000 });
}

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));

  // Paging: 25 a page, every study once over the pages.
  await page.waitForSelector("#studies tbody tr[data-study]");
  await page.waitForTimeout(300);
  const first = await listed();
  check(first.length === 25 && (await page.textContent(".pager span")) === "1–25"
    && await page.isEnabled(".pager button:last-child") && !(await page.isEnabled(".pager button:first-child")),
    `the first page lists 25 of ${EXPECT.total} studies`);
  await shot("page-1");
  await page.click(".pager button:last-child");
  await page.waitForFunction(() => document.querySelector(".pager span")?.textContent.startsWith("26–"));
  const second = await listed();
  check(second.length === EXPECT.total - 25 && new Set([...first, ...second]).size === EXPECT.total,
    `the second page lists the other ${EXPECT.total - 25}`);
  await page.click(".pager button:first-child");
  await page.waitForFunction(() => document.querySelector(".pager span")?.textContent === "1–25");

  // Sorting by a column, both ways.
  const column = async (n) => page.$$eval(`#studies tbody tr td:nth-child(${n})`, (tds) => tds.map((t) => t.textContent));
  const ordered = (xs, dir) => xs.every((x, i) => i === 0 || xs[i - 1].localeCompare(x, undefined, { numeric: true }) * dir <= 0);
  await page.click("#studies th:has-text('Patient ID')");
  check(ordered(await column(2), 1) && (await page.textContent("#studies th:nth-child(2)")).includes("▲"), "a click sorts by patient ID, ascending");
  await page.click("#studies th:has-text('Patient ID')");
  check(ordered(await column(2), -1) && (await page.textContent("#studies th:nth-child(2)")).includes("▼"), "a second click sorts descending");
  await shot("sorted");

  // Every search field.
  let got = await search(() => page.fill("input[name=pid]", EXPECT.pid.id));
  check(same(got, EXPECT.pid.studies), `patient ID ${EXPECT.pid.id} finds its ${EXPECT.pid.studies.length} studies`);
  got = await search(() => page.selectOption("select[name=mod]", EXPECT.modality.code));
  check(same(got, EXPECT.modality.studies), `modality ${EXPECT.modality.code} finds its ${EXPECT.modality.studies.length} studies`);
  got = await search(async () => {
    await page.fill("input[name=from]", EXPECT.range.from);
    await page.fill("input[name=to]", EXPECT.range.to);
  });
  check(same(got, EXPECT.range.studies), `${EXPECT.range.from} to ${EXPECT.range.to} finds the ${EXPECT.range.studies.length} studies of those dates`);
  await shot("date-range");
  got = await search(() => page.fill("input[name=acc]", EXPECT.accession.number));
  check(same(got, [EXPECT.accession.study]), `accession ${EXPECT.accession.number} finds its study`);

  // The viewer: thumbnails of both series.
  const ct = EXPECT.ct;
  await page.evaluate((uid) => { location.hash = `#/study/${uid}`; }, ct.study);
  await painted(0);
  await page.waitForFunction(() => [...document.querySelectorAll("#thumbs img")].every((i) => i.complete && i.naturalWidth > 0));
  check(await page.locator("#thumbs figure").count() === 2, "both series have a thumbnail");
  const cached = await page.evaluate(async (src) => {
    const [thumb, meta] = await Promise.all([fetch(src), fetch(src.replace(/\/series\/.*/, "/metadata"))]);
    return [thumb.status, thumb.headers.get("cache-control"), meta.status, meta.headers.get("cache-control")];
  }, await page.getAttribute("#thumbs img", "src"));
  check(cached.join() === "200,no-store,200,no-store", `no picture or metadata is kept in the browser's cache (${cached.join()})`);
  const box = await page.locator(".viewport").first().boundingBox();
  const [cx, cy] = [box.x + box.width / 2, box.y + box.height / 2];

  // Drag scrolls: 4 pixels a slice.
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  for (let i = 1; i <= 8; i++) await page.mouse.move(cx, cy + i * 5);
  await page.mouse.up();
  await page.waitForFunction(() => window.strata.viewports[0].stats.slice === 10, null, { timeout: 10000 });
  check((await page.textContent(".overlay.bl")).includes(`Slice 11/${ct.slices}`), "dragging 40 pixels scrolls 10 slices");

  // Window/level by right-drag, then by the menu.
  await page.waitForSelector(".badge.lossless", { timeout: 10000 });
  const asOpened = await viewportPixels(page);
  let before = asOpened;
  const defaultWindow = await page.textContent(".overlay.br");
  await settled(async () => {
    await page.mouse.move(cx, cy);
    await page.mouse.down({ button: "right" });
    for (let i = 1; i <= 5; i++) await page.mouse.move(cx + i * 10, cy + i * 4);
    await page.mouse.up({ button: "right" });
  });
  let after = await viewportPixels(page);
  const dragged = await page.textContent(".overlay.br");
  check(/^W \d+ L -?\d+/.test(dragged) && dragged !== defaultWindow && differ(before, after),
    `right-drag changes the window (${defaultWindow.split("\n")[0]} → ${dragged.split("\n")[0]}) and the pixels`);
  await shot("window-drag");
  before = after;
  await settled(() => page.selectOption("#preset", "bone"));
  after = await viewportPixels(page);
  check((await page.textContent(".overlay.br")).startsWith("bone") && differ(before, after), "the preset menu applies the bone window");

  // Zoom by ctrl-wheel and by key, pan by alt-drag, then fit and reset.
  await page.keyboard.down("Control");
  await page.mouse.wheel(0, -100);
  await page.keyboard.up("Control");
  await page.waitForFunction(() => Math.abs(window.strata.viewports[0].view.zoom - 1.1) < 1e-6);
  await settled(() => page.keyboard.press("+"));
  check(Math.abs((await vp()).view.zoom - 1.375) < 1e-6, "+ zooms by 1.25");
  before = await viewportPixels(page);
  check((await page.textContent(".overlay.br")).includes("Zoom 138%"), "ctrl-wheel and + zoom in (138%)");
  await settled(async () => {
    await page.keyboard.down("Alt");
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (let i = 1; i <= 5; i++) await page.mouse.move(cx + i * 12, cy - i * 8);
    await page.mouse.up();
    await page.keyboard.up("Alt");
  });
  after = await viewportPixels(page);
  const panned = (await vp()).view.pan;
  check(panned[0] > 0 && panned[1] < 0 && before.hash !== after.hash, `alt-drag pans (${panned.map(Math.round).join(", ")})`);
  await shot("zoom-pan");
  await page.keyboard.press("f");
  await page.waitForFunction(() => { const v = window.strata.viewports[0].view; return v.zoom === 1 && v.pan[0] === 0 && v.pan[1] === 0; });
  check((await vp()).view.preset === "bone", "F fits the image and keeps the window");
  await settled(() => page.keyboard.press("r"));
  check((await vp()).view.preset === null && (await vp()).view.window === null, "R forgets the window and the preset");
  const reset = await viewportPixels(page);
  const drift = Math.abs(reset.mean - asOpened.mean) + Math.abs(reset.std - asOpened.std);
  check((await page.textContent(".overlay.br")) === defaultWindow && drift < 0.5,
    `R resets to the series' own window: the picture is as it was (drift ${drift.toFixed(3)})`);

  // The help panel lists the shortcuts.
  await page.keyboard.press("?");
  await page.waitForSelector("#help", { state: "visible" });
  check(await page.locator("#help tr").count() >= 10, "? shows the keyboard shortcuts");
  await shot("help");
  await page.keyboard.press("?");
  await page.waitForSelector("#help", { state: "hidden" });

  // Layouts: 1×2 shows the second series beside the first, each scrolled on its own.
  await page.click("button[data-layout='1x2']");
  await painted(1);
  const [a, b] = [await vp(0), await vp(1)];
  check(a.series === ct.series[0] && b.series === ct.series[1], "1×2 shows both series side by side");
  await page.locator(".viewport").nth(1).click();
  for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => window.strata.viewports[1].stats.slice === 3);
  check((await vp(0)).slice === a.slice, "scrolling the second viewport leaves the first where it was");
  await page.click(`#thumbs figure[data-series='${ct.series[0]}']`);
  await page.waitForFunction((s) => window.strata.viewports[1].seriesUid === s && window.strata.viewports[1].series, ct.series[0]);
  check((await vp(0)).series === ct.series[0] && (await vp(1)).series === ct.series[0],
    "a thumbnail opens its series in the selected viewport only");
  await shot("layout-1x2");
  await page.click("button[data-layout='2x2']");
  for (let n = 0; n < 4; n++) await painted(n);
  const boxes = await page.$$eval(".viewport", (els) => els.map((e) => e.getBoundingClientRect()).map((r) => [r.x, r.y]));
  check(boxes.length === 4 && new Set(boxes.map((p) => p.join())).size === 4, "2×2 shows four viewports, each painted");
  for (let n = 0; n < 4; n++) check((await viewportPixels(page, n)).std > 5, `viewport ${n + 1} of 4 shows an image`);
  await shot("layout-2x2");
  await page.click("button[data-layout='1x1']");
  await page.waitForFunction(() => window.strata.viewports.length === 1 && document.querySelectorAll(".viewport").length === 1);
  check(true, "1×1 is one viewport again");

  // Logging out ends the session on the server too.
  await page.click("#logout");
  await page.waitForSelector("form#login");
  const me = await page.evaluate(async () => (await fetch("/api/me")).status);
  check(me === 401, `after logging out the session is gone (${me})`);
  await shot("logged-out");

  // An admin reaches the review queue from the bar.
  await login(page, BASE, env("ADMIN_USER"), env("ADMIN_PASSWORD"));
  await page.click("#nav-review");
  await page.waitForSelector("#review", { state: "attached" });
  check((await page.textContent("#main h2")).startsWith("Review queue ("), "an admin opens the review queue");
  await shot("review-queue");
  await page.click("#logout");
  await page.waitForSelector("form#login");

  // A patient sees their own studies only, may download them, and reaches their own record.
  await login(page, BASE, env("PATIENT_USER"), env("PATIENT_PASSWORD"));
  check((await page.textContent("#who")).includes("patient"), "the patient's role is shown");
  await page.waitForSelector("#studies:not([data-old]) ~ .pager span");
  check(same(await listed(), EXPECT.patient.studies), `a patient lists their own studies only (${EXPECT.patient.studies.length})`);
  const other = EXPECT.accession.study === ct.study ? EXPECT.pid.studies.find((u) => u !== ct.study) : EXPECT.accession.study;
  const status = await page.evaluate(async (uid) => (await fetch(`/dicomweb/studies/${uid}/metadata`)).status, other);
  check(status === 404, `another person's study does not exist for them (${status})`);
  await page.click(`#studies tr[data-study="${ct.study}"] a.person-link`);
  await page.waitForSelector("#person .timeline li");
  check(await page.locator(`#person .timeline li[data-study="${ct.study}"]`).count() === 1
    && await page.locator("#person a[href='#/review']").count() === 0, "a patient opens their own record, without the review queue");
  await shot("patient-record");
  await page.click(`#person .timeline li[data-study="${ct.study}"] a`);
  await painted(0);
  const download = await page.getAttribute("#download", "href");
  const exported = await page.evaluate(async (href) => {
    const r = await fetch(href);
    return { status: r.status, type: r.headers.get("content-type"), size: (await r.arrayBuffer()).byteLength };
  }, download);
  check(exported.status === 200 && exported.type === "application/zip" && exported.size > 0,
    `a patient may download their own study (${exported.status}, ${exported.size} bytes)`);
  await shot("patient-viewer");
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await close();
}
