// The viewer's speed in the browser (issue targets: input to painted frame p50 ≤ 20 ms and
// p95 ≤ 35 ms for a 512×512 CT in a 1024×1024 viewport; ≥ 58 painted frames per second while
// scrolling a 500-slice CT; first image under 300 ms after clicking a study).
// Run by benches/viewer_bench.sh, which starts the archive with such a study.
// Environment: BASE, USER, PASSWORD, STUDY, PATIENT.

import { launch, login } from "../tests/viewer/lib.mjs";

const { BASE, USER, PASSWORD, STUDY, PATIENT } = process.env;
// A 1024×1024 viewport beside the thumbnails.
const { context, close } = await launch({ width: 1174, height: 1102 });
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.round((s.length - 1) * p))]; };
try {
  const page = await context.newPage();
  await login(page, BASE, USER, PASSWORD);
  const firsts = [];
  for (let i = 0; i < 5; i++) {
    await page.goto(`${BASE}/#/studies?name=${encodeURIComponent(PATIENT)}`);
    await page.waitForSelector(`#studies tr[data-study="${STUDY}"]`);
    const t0 = await page.evaluate(() => performance.now());
    await page.click(`#studies tr[data-study="${STUDY}"]`);
    await page.waitForFunction(() => window.strata.viewports[0]?.stats.frames > 0, null, { timeout: 30000 });
    firsts.push((await page.evaluate(() => window.strata.viewports[0].stats.paintedAt[0])) - t0);
  }
  const size = await page.evaluate(() => window.strata.viewports[0].viewportSize());
  await page.waitForTimeout(500);

  // Single steps: each input waits for its frame.
  const vp = () => window.strata.viewports[0];
  for (let i = 0; i < 200; i++) {
    const before = await page.evaluate(() => window.strata.viewports[0].stats.latencies.length);
    await page.keyboard.press(i % 40 < 20 ? "ArrowDown" : "ArrowUp");
    await page.waitForFunction((n) => window.strata.viewports[0].stats.latencies.length > n, before);
  }
  const lat = await page.evaluate(() => window.strata.viewports[0].stats.latencies.slice(-200));

  // Continuous scroll through the series: one slice per input at 120 inputs per second.
  await page.keyboard.press("Home");
  await page.waitForTimeout(500);
  const scroll = await page.evaluate(async () => {
    const v = window.strata.viewports[0];
    const n = v.series.slices;
    const startFrames = v.stats.paintedAt.length;
    const t0 = performance.now();
    for (let i = 1; i < n; i++) {
      v.scroll(1);
      await new Promise((r) => setTimeout(r, 1000 / 120));
    }
    const tEnd = performance.now();
    const last = n - 1;
    while (v.stats.slice !== last && performance.now() - tEnd < 5000) await new Promise((r) => setTimeout(r, 2));
    const tFinal = v.stats.paintedAt.at(-1);
    const painted = v.stats.paintedAt.slice(startFrames).filter((t) => t <= tEnd);
    let gap = 0;
    for (let i = 1; i < painted.length; i++) gap = Math.max(gap, painted[i] - painted[i - 1]);
    return { slices: n, seconds: (tEnd - t0) / 1000, frames: painted.length, fps: painted.length / ((tEnd - t0) / 1000), maxGapMs: gap, finalAfterStopMs: tFinal - tEnd };
  });
  console.log(JSON.stringify({
    viewport: size,
    first_image_ms: { p50: pct(firsts, 0.5), max: Math.max(...firsts) },
    input_to_paint_ms: { p50: pct(lat, 0.5), p95: pct(lat, 0.95), n: lat.length },
    scroll,
  }));
} finally {
  await close();
}
