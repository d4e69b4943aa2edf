// Sending and sharing from a person's page, in chromium, against the running binary
// (tests/send.rs): the studies are sent to an AE of the AE table and the page follows the send
// until it is done; then a read-only DICOMweb token is made for them and shown once. Prints
// `result: {"token": ...}` for the test to use. Screenshots go to $OUT.
//
// Environment: BASE, USER/PASSWORD (an integrator), OUT, PERSON, AE (the destination), STUDIES
// (how many the person has).

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const { context, close } = await launch();
let page;
const shot = shooter(env("OUT"), () => page, "send-");

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await login(page, BASE, env("USER"), env("PASSWORD"));
  await page.goto(`${BASE}/#/person/${env("PERSON")}`);
  await page.waitForSelector("#send-button");
  const picked = await page.locator("#send input[name=study]:checked").count();
  check(picked === Number(env("STUDIES")), `every study of the person is picked (${picked})`);
  await page.selectOption("#send-to", `ae:${env("AE")}`);
  await page.click("#send-button");
  await page.waitForSelector("#send-status p[data-state=done]", { timeout: 60000 });
  const said = await page.textContent("#send-status p");
  check(/: done, (\d+) of \1 sent$/.test(said), `the page follows the send until it is done (${said})`);
  await shot("sent");

  await page.fill("#share-hours", "2");
  await page.click("#share-button");
  await page.waitForSelector("#share-token");
  const token = (await page.textContent("#share-token")).trim();
  check(token.startsWith("shr_"), "a share token is shown once");
  await shot("shared");
  console.log(`result: ${JSON.stringify({ token })}`);
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await close();
}
