// MPR's speed in the browser (issue targets: first reformatted frame ≤ 400 ms after opening a
// 512×512×400 CT in MPR; then input to painted frame p50 ≤ 25 ms, p95 ≤ 40 ms). The first frame
// comes from the coarse volume; "whole volume settled" is when all three planes show the whole
// volume's lossless still (polled, so within a few ms).
// Run by benches/mpr_bench.sh, which starts the archive with such a study.
// Environment: BASE, USER, PASSWORD, STUDY; SCROLL=1 also times scrolling.

import { launch, login } from "../tests/viewer/lib.mjs";

const { BASE, USER, PASSWORD, STUDY, SCROLL } = process.env;
// three viewports of about 1000×1000 beside the thumbnails
const { context, close } = await launch({ width: 3250, height: 1102 });
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.round((s.length - 1) * p))]; };
const out = {};
try {
  const page = await context.newPage();
  await login(page, BASE, USER, PASSWORD);
  /** Opens the study, then MPR: ms from the click to each plane's first painted frame. */
  const openMpr = async () => {
    await page.goto(`${BASE}/#/studies`);
    await page.goto(`${BASE}/#/study/${STUDY}`);
    await page.waitForFunction(() => window.strata.viewports[0]?.stats.frames > 0, null, { timeout: 60000 });
    // as a reader looks at the stack before asking for MPR: the viewer has started its spare
    // stream workers (within about 3 s of opening the study)
    if (await page.evaluate(() => Boolean(window.strata.spareWorkers))) {
      await page.waitForFunction(() => window.strata.spareWorkers() >= 3, null, { timeout: 10000 });
    } else await page.waitForTimeout(3000); // a viewer without spare workers: the same pause
    // from the reader's click: the time the browser stamped on its event
    await page.evaluate(() => document.addEventListener("click", (e) => { window.strata.clickedAt = e.timeStamp; }, { capture: true, once: true }));
    await page.click("#mpr");
    const t0 = await page.evaluate(() => window.strata.clickedAt);
    await page.waitForFunction(() => window.strata.viewports.length === 3
      && window.strata.viewports.every((v) => v.series && v.series.mpr && v.stats.frames > 0), null, { timeout: 120000 });
    const first = await page.evaluate((t) => window.strata.viewports.map((v) => Math.round(v.stats.paintedAt[0] - t)), t0);
    // then the whole volume: each plane made from it and settled on its lossless still
    await page.waitForFunction(() => window.strata.viewports.every((v) => v.series.mpr.complete !== false && v.stats.lossless), null, { timeout: 120000 });
    const whole = await page.evaluate((t) => Math.round(performance.now() - t), t0);
    return { first, whole };
  };
  const cold = await openMpr();
  out.cold_first_frame_ms = cold.first;
  out.cold_whole_volume_settled_ms = cold.whole;
  // the volume held now
  out.warm_first_frame_ms = (await openMpr()).first;
  out.viewport = await page.evaluate(() => window.strata.viewports[1].viewportSize());
  out.plane = await page.evaluate(() => {
    const s = window.strata.viewports[1].series;
    return { columns: s.columns, rows: s.rows, slices: s.slices };
  });
  if (SCROLL === "1") {
    /** Input to painted frame in the coronal view, each input waiting for its frame. */
    const steps = async (n) => {
      await page.evaluate(() => { window.strata.viewports[1].stats.latencies = []; window.strata.viewports[1].stats.serverMs = []; window.strata.viewports[1].stats.renderMs = []; });
      for (let i = 0; i < n; i++) {
        await page.evaluate((k) => window.strata.viewports[1].scroll(k % 40 < 20 ? 1 : -1), i);
        await page.waitForFunction((c) => window.strata.viewports[1].stats.latencies.length > c, i, { timeout: 30000 });
      }
      const lat = await page.evaluate(() => window.strata.viewports[1].stats.latencies);
      const server = await page.evaluate(() => window.strata.viewports[1].stats.serverMs);
      const render = await page.evaluate(() => window.strata.viewports[1].stats.renderMs);
      const r = (v) => Math.round(v * 10) / 10;
      return { p50: r(pct(lat, 0.5)), p95: r(pct(lat, 0.95)), n: lat.length,
        server_render_encode_p50: r(pct(server, 0.5)), server_render_encode_p95: r(pct(server, 0.95)), server_render_p50: r(pct(render, 0.5)) };
    };
    await page.waitForTimeout(500);
    out.coronal_input_to_paint_ms = await steps(200);
    await page.evaluate(() => window.strata.viewports[1].sendView({ slab: { thickness: 20, mode: "mip" } }));
    await page.waitForTimeout(500);
    out.coronal_mip20_input_to_paint_ms = await steps(100);
  }
  console.log(JSON.stringify(out));
} finally {
  await close();
}
