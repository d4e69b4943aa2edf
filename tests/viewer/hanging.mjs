// Hanging protocols in the viewer, in chromium (tests/priors.rs). EXPECT=rule: the archive's
// chest CT rule lays the study out (the lung series with the prior beside it), and the reader
// then picks one viewport (remembered on the server); EXPECT=mine: the reader's own layout
// (one viewport, no prior) is what opens.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, STUDY, PRIOR, EXPECT, OUT.

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const STUDY = env("STUDY");
const PRIOR = env("PRIOR");
const EXPECT = env("EXPECT");
const { context, close } = await launch({ width: 1400, height: 800 });
let page;
const shot = shooter(env("OUT"), () => page, `hanging-${env("RAD_USER")}-${EXPECT}-`);

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForFunction(() => (document.querySelector("#hanging") || {}).textContent, null, { timeout: 30000 });
  if (EXPECT === "rule") {
    await page.waitForFunction((prior) => {
      const v = window.strata.viewports;
      return v.length === 2 && v[1].series && v[1].series.study === prior && v[0].series;
    }, PRIOR, { timeout: 30000 });
    const note = await page.textContent("#hanging");
    check(note === "Layout: Chest CT, lung series, with its prior", `the chest CT rule laid it out: ${note}`);
    const first = await page.evaluate(() => window.strata.viewports[0].series.series_description);
    check(/lung/i.test(first), `the lung series is shown first: ${first}`);
    await shot("rule");
    if (env("RAD_USER") === "rad") {
      // the reader's own choice: one viewport
      await page.click("button[data-layout='1x1']");
      await page.waitForFunction(() => window.strata.viewports.length === 1, null, { timeout: 15000 });
      await page.waitForResponse((r) => r.url().endsWith("/api/viewer/layouts") && r.request().method() === "PUT", { timeout: 15000 })
        .catch(() => {});
      // the PUT may have answered before the wait began: ask until the server has it
      await page.waitForFunction(async () => {
        const r = await fetch("/api/viewer/layouts", { credentials: "same-origin", headers: { Accept: "application/json" } });
        return (await r.json()).mine.length === 1;
      }, null, { timeout: 15000 });
    }
  } else {
    await page.waitForFunction(() => document.querySelector("#hanging").textContent === "Layout: yours", null, { timeout: 30000 });
    await page.waitForFunction(() => window.strata.viewports.length === 1 && window.strata.viewports[0].series, null, { timeout: 15000 });
    // nothing more opens beside it
    await page.waitForTimeout(1000);
    const n = await page.evaluate(() => window.strata.viewports.length);
    check(n === 1, `the reader's one viewport, no prior: ${n}`);
    await shot("mine");
  }
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await shot("failure").catch(() => {});
  await close();
  process.exit(1);
}
await close();
