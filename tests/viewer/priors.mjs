// Priors in the viewer, in chromium, against the running binary (tests/priors.rs): the study
// opens with the person's prior from another hospital beside it; scrolling the current view
// scrolls the prior to the same position and back; window and zoom follow when linked.
// Prints `result: {...}` for the Rust side to check against the slice positions.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, STUDY (the current study), PRIOR, OUT.

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const STUDY = env("STUDY");
const PRIOR = env("PRIOR");
const { context, close } = await launch({ width: 1400, height: 800 });
let page;
const shot = shooter(env("OUT"), () => page, "priors-");

/** Waits until viewport n shows its newest view, lossless. */
async function settled(n) {
  await page.waitForFunction((k) => {
    const v = window.strata.viewports[k];
    return v && v.series && v.stats.lossless && v.stats.lastSeq >= v.seq && v.stats.slice === v.view.slice;
  }, n, { timeout: 30000 });
}

const slices = () => page.evaluate(() => window.strata.viewports.map((v) => v.view.slice));

const result = {};
try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction((prior) => {
    const v = window.strata.viewports;
    return v.length === 2 && v[0].series && v[1].series && v[1].series.study === prior;
  }, PRIOR, { timeout: 30000 });
  await settled(0);
  await settled(1);
  result.priors_offered = await page.$$eval("#prior option", (os) => os.map((o) => o.value).filter(Boolean));
  result.current_positions = await page.evaluate(() => window.strata.viewports[0].series.positions);
  result.prior_positions = await page.evaluate(() => window.strata.viewports[1].series.positions);
  result.prior_note = await page.evaluate(() => window.strata.viewports[1].linkNote);
  check((await page.textContent(".viewport >> nth=1 >> .overlay.tr")).includes("Prior"), "the prior's view says so");
  await shot("opened");

  // scroll the current study: the prior follows
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  for (let i = 0; i < 12; i++) await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => window.strata.viewports[0].view.slice === 12 && window.strata.viewports[1].view.slice > 0, null, { timeout: 15000 });
  await settled(0);
  await settled(1);
  result.after_current_scroll = await slices();
  await shot("current-scrolled");

  // scroll the prior: the current follows
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => window.strata.viewports[1].box.classList.contains("selected")), "Tab selects the prior's view");
  const before = await slices();
  for (let i = 0; i < 2; i++) await page.keyboard.press("ArrowDown");
  await page.waitForFunction((b) => window.strata.viewports[1].view.slice === b[1] + 2, before, { timeout: 15000 });
  await settled(0);
  await settled(1);
  result.after_prior_scroll = await slices();

  // window and zoom linked: a preset on the prior is the current's too
  await page.check("#link-look");
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.keyboard.press("3");
  await page.waitForFunction(() => window.strata.viewports[0].view.preset === "lung", null, { timeout: 15000 });
  result.linked_preset = await page.evaluate(() => window.strata.viewports[0].view.preset);
  await settled(0);
  await shot("linked");
  console.log(`result: ${JSON.stringify(result)}`);
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
