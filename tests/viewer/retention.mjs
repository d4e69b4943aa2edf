// The console's storage and retention pages as an administrator uses them: Debian's chromium,
// headless, driven by playwright-core against the running binary. Screenshots under $OUT; exits
// non-zero on a failure.
//
// Environment: BASE, ADMIN_USER/ADMIN_PASSWORD, OUT, EXPIRED (the one study past retention),
// HOLD_STUDY (a study to place a hold on and release), COLD_STORES (how many).

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const EXPIRED = env("EXPIRED");
const HOLD_STUDY = env("HOLD_STUDY");
const { context, close } = await launch();
let page;
const shot = shooter(env("OUT"), () => page);
const rows = (table) => page.locator(`#${table} tbody tr`);

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  await login(page, BASE, env("ADMIN_USER"), env("ADMIN_PASSWORD"));
  await page.click("#nav-console");

  // Storage and cost: each store with its share and projected cost; reads by age.
  await page.click("nav.tabs a[href='#/console/storage']");
  await page.waitForSelector("#stores tbody tr");
  const hot = await page.textContent("#tier-hot");
  check(/Hot: .* on each of 3 replicas \(\d+\.\d+ a month\)/.test(hot), `the hot tier's bytes and cost are shown (${hot})`);
  const cold = await page.textContent("#tier-cold");
  check(/Cold: .* in 1 studies, as 4 \+ 2 shards \(\d+\.\d+ a month\)/.test(cold), `the cold tier's bytes and cost are shown (${cold})`);
  check((await rows("stores").count()) === 3 + Number(env("COLD_STORES")), "every replica and cold store is listed");
  await page.waitForSelector("#decay tbody tr");
  const ages = await page.locator("#decay tbody tr td:first-child").allTextContents();
  check(ages.length >= 2 && ages.every((a) => /months$/.test(a)), `reads per study are shown by age (${ages.length} ages)`);
  check(/study-days read/.test(await page.textContent("#decay-summary")), "the decay says what it counts");
  await shot("storage");

  // Retention: propose, look at the batch, hold and release, approve.
  await page.click("nav.tabs a[href='#/console/retention']");
  await page.waitForSelector("#propose");
  await page.click("#propose");
  await page.waitForSelector("#batches tbody tr td:nth-child(2)");
  const state = await page.locator("#batches tbody tr td:nth-child(2)").first().textContent();
  check(state === "proposed", "a batch is proposed from the page");
  await page.locator("#batches tbody tr td:first-child a").first().click();
  await page.waitForSelector("#batch-studies tbody tr");
  const studies = await page.locator("#batch-studies tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.study));
  check(studies.length === 1 && studies[0] === EXPIRED, `the batch holds exactly the study past retention (${studies})`);
  await shot("batch");

  await page.selectOption("#place-hold select[name=on]", "study");
  await page.fill("#place-hold input[name=target]", HOLD_STUDY);
  await page.fill("#place-hold input[name=reason]", "litigation");
  await page.click("#place-hold button[type=submit]");
  await page.waitForSelector("#holds tbody tr");
  const on = await page.locator("#holds tbody tr td:nth-child(2)").first().textContent();
  check(on === `study ${HOLD_STUDY}`, "a hold placed from the page is listed");
  await shot("hold");
  await page.locator("#holds tbody tr button.release").first().click();
  await page.waitForSelector("#holds tbody tr", { state: "detached" });
  check(true, "a hold released from the page is gone");

  await page.locator("#batches tbody tr button.approve").first().click();
  await page.waitForFunction(() => {
    const td = document.querySelector("#batches tbody tr td:nth-child(2)");
    return td && td.textContent !== "proposed";
  });
  check(true, "a batch approved from the page leaves the proposed state");
  check((await rows("rejected").count()) === 0, "no instance is rejected");
  await shot("approved");
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await close();
}
