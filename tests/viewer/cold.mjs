// A study in the cold tier opened in the viewer, in chromium, against the running binary
// (tests/tiers.rs): the page says it is retrieving the study from cold storage, with its
// progress, until the study is back; then the viewer shows it and says how long that took.
// Screenshots go to $OUT.
//
// Environment: BASE, RAD_USER/RAD_PASSWORD, OUT, STUDY (a cold study).

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const { context, close } = await launch({ width: 900, height: 700 });
let page;
const shot = shooter(env("OUT"), () => page, "cold-");

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  // every answer of the restore route, as the page received it (read once they are all in)
  const responses = [];
  page.on("response", (r) => {
    if (r.url().endsWith("/restore")) responses.push(r.json().catch(() => null));
  });
  await login(page, BASE, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.goto(`${BASE}/#/study/${env("STUDY")}`);
  await page.waitForSelector("#cold-note", { timeout: 30000 });
  const answers = await Promise.all(responses);
  check(answers.length >= 2 && answers[0].state === "restoring" && answers.at(-1).state === "hot",
    `the viewer asked until the study was back (${JSON.stringify(answers)})`);
  const note = await page.textContent("#cold-note");
  check(/^Retrieved from cold storage in \d+\.\d s$/.test(note), `the viewer says it came from cold storage (${note})`);
  await page.waitForFunction(() => {
    const v = window.strata.viewports[0];
    return v && v.series && v.stats.frames > 0;
  }, null, { timeout: 20000 });
  check(true, "the restored study is shown");
  await shot("restored");
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await close();
}
