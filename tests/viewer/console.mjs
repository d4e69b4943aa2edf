// The operator's console as an administrator uses it: Debian's chromium, headless, driven by
// playwright-core against the running binary. Every page is opened, its content checked and
// screenshotted under $OUT; exits non-zero on a failure.
//
// Environment: BASE (http://127.0.0.1:PORT), ADMIN_USER/ADMIN_PASSWORD, NODE (the server's node
// id), OUT (screenshot directory).

import { check, env, launch, login, shooter } from "./lib.mjs";

const BASE = env("BASE");
const NODE = env("NODE");
const { context, close } = await launch();
let page;
const shot = shooter(env("OUT"), () => page);
const rows = (table) => page.locator(`#${table} tbody tr`);

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  await login(page, BASE, env("ADMIN_USER"), env("ADMIN_PASSWORD"));
  check(await page.isVisible("#nav-console"), "an administrator sees the console in the menu");
  await page.click("#nav-console");

  // Nodes: this node, alive, with its rates; the page reads them again by itself.
  const node = `#nodes tr[data-node="${NODE}"]`;
  await page.waitForSelector(`${node} .state.ok`);
  await page.waitForSelector(`${node} td a[href^="http://"]`);
  const cells = await page.locator(`${node} td`).allTextContents();
  check(cells[0].includes(NODE) && cells[1] === "all" && cells[2] === "alive" && cells[4].startsWith("http://"),
    "the nodes page lists this node alive");
  await page.waitForSelector(`#rates tr[data-node="${NODE}"]`);
  check((await rows("rates").count()) === 1, "the rates list this node");
  const seen = await page.locator(`${node} td`).nth(3).textContent();
  await page.waitForFunction(([sel, before]) => {
    const td = document.querySelectorAll(`${sel} td`)[3];
    return td && td.textContent !== before;
  }, [node, seen], { timeout: 15000 });
  check(true, "the nodes page refreshes by itself");
  await shot("nodes");

  // Replicas and workers.
  await page.click("nav.tabs a[href='#/console/replicas']");
  await page.waitForSelector("#replicas tbody tr");
  const health = await page.locator("#replicas tbody tr .state").allTextContents();
  check(health.length === 3 && health.every((h) => h === "reachable"), "three replicas, all reachable");
  check(/Repair queue: 0 copies waiting/.test(await page.textContent("#repair-queue")), "the repair queue is shown");
  check((await page.textContent("#scrub")).startsWith("Scrub: "), "the scrub's progress is shown");
  await page.waitForSelector("#workers tr[data-worker=repair]");
  const lease = await page.locator("#workers tr[data-worker=repair] td").nth(4).textContent();
  check(lease === "" || lease.startsWith(NODE), "the workers are listed");
  await shot("replicas");

  // The AE table: add one through the page, then remove it.
  await page.click("nav.tabs a[href='#/console/ae']");
  await page.waitForSelector("form#add-ae");
  await page.fill("#add-ae input[name=aet]", "CONSOLEAE");
  await page.fill("#add-ae input[name=host]", "pacs.example.org");
  await page.fill("#add-ae input[name=port]", "11112");
  await page.click("#add-ae button[type=submit]");
  await page.waitForSelector("#ae tr[data-ae=CONSOLEAE]");
  const ae = await page.locator("#ae tr[data-ae=CONSOLEAE] td").allTextContents();
  check(ae[1] === "pacs.example.org" && ae[2] === "11112", "an AE added through the page is listed");
  await shot("ae-added");
  await page.click("#ae tr[data-ae=CONSOLEAE] button.remove");
  await page.waitForSelector("#ae tr[data-ae=CONSOLEAE]", { state: "detached" });
  check(true, "an AE removed through the page is gone");

  // The audit trail, then narrowed to the AE changes.
  await page.click("nav.tabs a[href='#/console/audit']");
  await page.waitForSelector("#audit tbody tr");
  const all = await rows("audit").count();
  await shot("audit");
  await page.fill("#audit-filter input[name=action]", "http.ae.set");
  await page.click("#audit-filter button[type=submit]");
  await page.waitForFunction(() => {
    const r = document.querySelectorAll("#audit tbody tr");
    return r.length > 0 && [...r].every((tr) => tr.children[4].textContent === "http.ae.set");
  });
  const narrowed = await page.locator("#audit tbody tr td:nth-child(5)").allTextContents();
  check(narrowed.length === 1 && narrowed.length < all, `the audit filter narrows the trail (${all} to ${narrowed.length})`);
  await shot("audit-filtered");

  // Users, tokens and sessions: the accounts page, one click away.
  await page.click("nav.tabs a[href='#/accounts']");
  await page.waitForSelector(`#users tr[data-user="${env("ADMIN_USER")}"]`);
  check(await page.isVisible("#sessions"), "the console leads to users, tokens and sessions");
  await shot("accounts");
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await close();
}
