// Reference lines in the viewer, in chromium, against the running binary (tests/priors.rs): a
// CT series and a coronal localizer of one frame of reference in a 2x2 layout. With a CT view
// selected and scrolled, the localizer views show where its slice lies; with a localizer
// selected, the CT view shows where it lies; another CT view, parallel, shows none. Prints `result: {...}` for the Rust side to check against the geometry.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, STUDY, OUT.

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const STUDY = env("STUDY");
const { context, close } = await launch({ width: 1400, height: 900 });
let page;
const shot = shooter(env("OUT"), () => page, "reference-");

/** Waits until viewport n shows its newest view. */
async function shown(n) {
  await page.waitForFunction((k) => {
    const v = window.strata.viewports[k];
    return v && v.series && v.stats.frames > 0 && v.stats.lastSeq >= v.seq && v.stats.slice === v.view.slice;
  }, n, { timeout: 30000 });
}

const result = {};
try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => window.strata.viewports[0]?.series, null, { timeout: 30000 });
  await page.click('button[data-layout="2x2"]');
  await page.waitForFunction(() => window.strata.viewports.length === 4 && window.strata.viewports.every((v) => v.series), null, { timeout: 30000 });
  for (let k = 0; k < 4; k++) await shown(k);
  // which views show the localizer (the series' order decides): one CT view is selected
  const kinds = await page.evaluate(() => window.strata.viewports.map((v) => v.series.series_description === "LOCALIZER"));
  const ct = kinds.indexOf(false);
  const locs = kinds.flatMap((l, i) => (l ? [i] : []));
  const others = kinds.flatMap((l, i) => (!l && i !== ct ? [i] : []));
  check(ct >= 0 && locs.length >= 1 && others.length >= 1, `the layout: ${kinds}`);

  // a CT view selected and scrolled: the localizers show its slice
  await page.click(`.viewport >> nth=${ct}`);
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  for (let i = 0; i < 9; i++) await page.keyboard.press("ArrowDown");
  await page.waitForFunction((k) => window.strata.viewports[k].view.slice === 9, ct, { timeout: 15000 });
  await shown(ct);
  await page.waitForFunction((k) => (window.strata.viewports[k].refLines || []).length === 1, locs[0], { timeout: 15000 });
  Object.assign(result, await page.evaluate(([c, ls, os]) => {
    const v = window.strata.viewports;
    return {
      axial_slice: v[c].view.slice,
      axial_positions: v[c].series.positions,
      axial_plane: v[c].series.planes[v[c].view.slice],
      on_localizer: v[ls[0]].refLines[0],
      same_on_all: ls.every((k) => JSON.stringify(v[k].refLines) === JSON.stringify(v[ls[0]].refLines)),
      parallel_lines: os.reduce((n, k) => n + v[k].refLines.length, 0),
    };
  }, [ct, locs, others]));
  check(result.same_on_all, "every localizer view shows the line");
  await shot("axial-selected");

  // the localizer selected: the CT views show where it lies
  await page.click(`.viewport >> nth=${locs[0]}`);
  await page.waitForFunction((k) => (window.strata.viewports[k].refLines || []).length === 1, ct, { timeout: 15000 });
  result.on_axial = await page.evaluate((k) => window.strata.viewports[k].refLines[0], ct);
  await shot("localizer-selected");
  console.log(`result: ${JSON.stringify(result)}`);
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
