// Cine in the viewer, in chromium, against the running binary (tests/cine.rs): a 512² CT series
// played from the toolbar at 10 and then 30 frames per second, the frames painted counted
// against the clock; stopped, it settles on a lossless still. Then a multi-frame clip plays at
// its own Frame Time, started and stopped with the keyboard. Prints `result: {...}` with the
// rates measured and the painted-frame intervals. Screenshots go to $OUT.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, OUT, STUDY (the series), CLIP_STUDY (the clip).

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const { context, close } = await launch({ width: 900, height: 700 });
let page;
const shot = shooter(env("OUT"), () => page, "cine-");

/** Opens a study and waits for its first frame. */
async function openStudy(study) {
  await page.goto(`${BASE}/#/study/${study}`);
  await page.waitForFunction(() => {
    const v = window.strata.viewports[0];
    return v && v.series && v.stats.frames > 0;
  }, null, { timeout: 20000 });
}

/** Waits until the first viewport says it plays (at `fps`) or has stopped. */
async function cineIs(playing, fps = null) {
  await page.waitForFunction(([p, f]) => {
    const c = window.strata.viewports[0].cine;
    return c.playing === p && (f === null || c.fps === f);
  }, [playing, fps], { timeout: 10000 });
}

/** The frames painted during `ms` milliseconds, after `settle` ms at the new rate: their rate,
 * the intervals between them (p50, p95, max) and the slices they showed. */
async function measure(ms, settle = 700) {
  await page.waitForTimeout(settle);
  const from = await page.evaluate(() => performance.now());
  await page.waitForTimeout(ms);
  return page.evaluate(([t0, span]) => {
    const s = window.strata.viewports[0].stats;
    const picked = s.paintedAt.map((t, i) => [t, s.paintedSlices[i]]).filter(([t]) => t >= t0 && t < t0 + span);
    const times = picked.map(([t]) => t);
    const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    const q = (p) => gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))] : Infinity;
    return {
      frames: times.length,
      fps: (times.length * 1000) / span,
      p50_ms: q(0.5), p95_ms: q(0.95), max_ms: gaps.length ? gaps[gaps.length - 1] : Infinity,
      slices: [...new Set(picked.map(([, sl]) => sl))].length,
      skipped: window.strata.viewports[0].cine.skipped,
    };
  }, [from, ms]);
}

const result = {};
try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));

  // the series: no Frame Time, so its own rate is 10
  await openStudy(env("STUDY"));
  const series = await page.evaluate(() => window.strata.viewports[0].series);
  check(series.cine_fps === 10, `a series without a frame time plays at 10 fps by default (${series.cine_fps})`);
  await page.fill("#cine-fps", "10");
  await page.click("#cine");
  await cineIs(true, 10);
  check((await page.textContent("#cine")) === "Stop", "the button says Stop while playing");
  result.at10 = await measure(3000);
  await shot("playing-10");
  check(Math.abs(result.at10.fps - 10) <= 2, `at 10 fps the viewer paints ${result.at10.fps.toFixed(1)} frames a second`);
  check(result.at10.slices >= result.at10.frames - 1, `each frame painted shows the next slice (${result.at10.slices} slices in ${result.at10.frames} frames)`);
  check(await page.evaluate(() => !window.strata.viewports[0].stats.lossless), "no lossless still while playing");

  // a new rate while playing
  await page.fill("#cine-fps", "30");
  await page.dispatchEvent("#cine-fps", "change");
  await cineIs(true, 30);
  result.at30 = await measure(3000);
  await shot("playing-30");
  check(result.at30.fps >= 24, `at 30 fps the viewer paints ${result.at30.fps.toFixed(1)} frames a second (p95 interval ${result.at30.p95_ms.toFixed(1)} ms)`);

  // stop: the slice shown settles lossless
  await page.click("#cine");
  await cineIs(false);
  await page.waitForFunction(() => {
    const v = window.strata.viewports[0];
    return v.stats.lossless && v.badge.textContent === "LOSSLESS";
  }, null, { timeout: 10000 });
  const stopped = await page.evaluate(() => {
    const v = window.strata.viewports[0];
    return { view: v.view.slice, shown: v.stats.slice, sent: v.cine.sent, skipped: v.cine.skipped };
  });
  result.stopped = stopped;
  check(stopped.view === stopped.shown, `stopped on the slice shown (${stopped.shown}), lossless`);
  check((await page.textContent("#cine")) === "Play", "the button says Play again");
  await shot("stopped");

  // the clip plays at its Frame Time (33.3 ms: 30 fps), started and stopped with C
  await openStudy(env("CLIP_STUDY"));
  const clip = await page.evaluate(() => window.strata.viewports[0].series);
  check(clip.cine_fps === 30 && clip.slices > 1, `a clip of ${clip.slices} frames plays at its frame time by default (${clip.cine_fps} fps)`);
  await page.fill("#cine-fps", "");
  await page.focus(".viewport"); // keys typed in the rate box are the box's
  await page.keyboard.press("c");
  await cineIs(true, 30);
  result.clip = await measure(2000);
  check(result.clip.fps >= 24, `the clip is painted at ${result.clip.fps.toFixed(1)} frames a second`);
  await page.keyboard.press("c");
  await cineIs(false);
  await page.waitForFunction(() => window.strata.viewports[0].stats.lossless, null, { timeout: 10000 });
  check(true, "the clip stops lossless");
  await shot("clip-stopped");
  console.log(`result: ${JSON.stringify(result)}`);
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
