// An RT Dose grid in the viewer, in chromium (tests/dose.rs): a dose map in colour with its
// legend, on one scale through the grid's frames. Prints `result: {...}`.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, STUDY, TOP (the grid's highest dose), OUT.

import { check, env, launch, login, shooter, viewportPixels } from "./lib.mjs";

const BASE = env("BASE");
const STUDY = env("STUDY");
const { context, close } = await launch({ width: 1100, height: 800 });
let page;
const shot = shooter(env("OUT"), () => page, "dose-");

/** Waits until the viewport shows slice n, lossless. */
async function at(n) {
  await page.evaluate((s) => window.strata.viewports[0].sendView({ slice: s }), n);
  await page.waitForFunction((s) => {
    const v = window.strata.viewports[0];
    return v.stats.slice === s && v.stats.lossless && v.stats.lastSeq >= v.seq;
  }, n, { timeout: 15000 });
}

const result = { legend_tops: [] };
try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => window.strata.viewports[0]?.series?.dose, null, { timeout: 30000 });
  for (const n of [0, 7, 14]) {
    await at(n);
    await page.waitForSelector(".viewport .dose-legend:not([hidden])");
    result.legend_tops.push(Number(await page.getAttribute(".viewport .dose-legend", "data-max")));
    if (n === 7) await shot(`frame-${n}`);
  }
  result.units = await page.getAttribute(".viewport .dose-legend", "data-units");
  result.labels = await page.$$eval(".viewport .dose-legend .labels span", (ls) => ls.map((l) => l.textContent));
  check(Math.abs(result.legend_tops[0] - Number(env("TOP"))) < 1e-9, `the legend's top is the grid's highest dose: ${result.legend_tops[0]}`);
  const px = await viewportPixels(page, 0);
  check(px.std > 0, "the dose map shows something");
  console.log(`result: ${JSON.stringify(result)}`);
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
