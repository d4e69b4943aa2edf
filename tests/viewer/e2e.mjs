// The viewer end to end, as a radiologist and an administrator use it: Debian's chromium,
// headless, driven by playwright-core against the running binary. Every step is asserted and
// screenshotted under $OUT. Prints one JSON line of measurements; exits non-zero on a failure.
//
// Environment: BASE (http://127.0.0.1:PORT), RAD_USER/RAD_PASSWORD, ADMIN_USER/ADMIN_PASSWORD,
// PATIENT (a family name to search), STUDY (the CT study's UID), BROKEN_STUDY (a study whose pixel
// data cannot be decoded), OUT (screenshot directory).
//
// Once, it prints `restart-server` on stdout and waits for a line on stdin: whoever runs it
// restarts the server on the same address meanwhile, or kills the node holding the viewer's stream
// behind a proxy, so that the viewer loses its connection.

import { createInterface } from "node:readline";
import { check, differ, env, launch, login as signIn, shooter, viewportPixels as pixelsOf } from "./lib.mjs";

const lines = createInterface({ input: process.stdin });
const stdin = lines[Symbol.asyncIterator]();
const BASE = env("BASE");
const OUT = env("OUT");
const STUDY = env("STUDY");
const { context, close } = await launch();
const results = {};
let page;
const shot = shooter(OUT, () => page);
const viewportPixels = () => pixelsOf(page);
const login = (user, password) => signIn(page, BASE, user, password);

try {
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));

  // Radiologist: log in, search, open the study.
  await login(env("RAD_USER"), env("RAD_PASSWORD"));
  check((await page.textContent("#who")).includes("radiologist"), "the user's name and role are shown");
  await shot("logged-in");
  await page.fill("input[name=name]", env("PATIENT"));
  await page.click("form#search button[type=submit]");
  await page.waitForSelector(`#studies tr[data-study="${STUDY}"]`);
  await shot("search");
  const clicked = Date.now();
  await page.click(`#studies tr[data-study="${STUDY}"]`);
  await page.waitForFunction(() => window.strata && window.strata.viewports[0] && window.strata.viewports[0].stats.frames > 0, null, { timeout: 20000 });
  results.first_image_ms = Date.now() - clicked;
  await page.waitForTimeout(300);
  const first = await viewportPixels();
  check(first.std > 5, `the canvas shows an image (pixel spread ${first.std.toFixed(1)})`);
  await shot("study-open");

  // Scroll 20 slices with the wheel: the image and the slice counter change.
  await page.hover(".viewport");
  for (let i = 0; i < 20; i++) {
    await page.mouse.wheel(0, 100);
    await page.waitForTimeout(15);
  }
  await page.waitForFunction(() => window.strata.viewports[0].stats.slice === 20, null, { timeout: 10000 });
  await page.waitForTimeout(300);
  const scrolled = await viewportPixels();
  check(differ(first, scrolled), "scrolling 20 slices changes the canvas");
  check((await page.textContent(".overlay.bl")).includes("Slice 21/"), "the slice counter says 21");
  await shot("scrolled-20");

  // A preset changes the pixels.
  await page.keyboard.press("3");
  await page.waitForTimeout(600);
  const preset = await viewportPixels();
  check(differ(scrolled, preset), "the lung preset changes the pixels");
  await shot("preset-lung");

  // Still: the badge turns LOSSLESS once the still's CRC matched.
  await page.waitForSelector(".badge.lossless", { timeout: 5000 });
  check((await page.textContent(".badge")).trim() === "LOSSLESS", "after idle the badge says LOSSLESS");
  await shot("lossless");

  // Input-to-paint latency of single steps (each waits for its frame).
  const latencies = [];
  for (let i = 0; i < 40; i++) {
    const before = await page.evaluate(() => window.strata.viewports[0].stats.latencies.length);
    await page.keyboard.press(i % 2 ? "ArrowUp" : "ArrowDown");
    await page.waitForFunction((n) => window.strata.viewports[0].stats.latencies.length > n, before);
    latencies.push(await page.evaluate(() => window.strata.viewports[0].stats.latencies.at(-1)));
  }
  latencies.sort((a, b) => a - b);
  results.input_to_paint_ms = { p50: latencies[20], p95: latencies[37] };

  // The radiologist has no download action, and original pixels are refused.
  check(await page.locator("#download").count() === 0, "no download action for a radiologist");
  const status = await page.evaluate(async (uid) => (await fetch(`/dicomweb/studies/${uid}`)).status, STUDY);
  check(status === 403, `a direct request for original pixels is refused (${status})`);

  // A tablet: the layout fits 1024×768, and the image is rendered again at the new size.
  const framesBefore = await page.evaluate(() => window.strata.viewports[0].stats.frames);
  await page.setViewportSize({ width: 1024, height: 768 });
  await page.waitForFunction((n) => window.strata.viewports[0].stats.frames > n, framesBefore);
  await page.waitForTimeout(300);
  // (the study's prior may be beside it: the viewports' grid is what must fit)
  const box = await page.locator("#grid").boundingBox();
  check(box.width >= 700 && box.height >= 580 && box.x + box.width <= 1024 && box.y + box.height <= 768,
    `the viewports fit a 1024×768 tablet (${Math.round(box.width)}×${Math.round(box.height)})`);
  check((await viewportPixels()).std > 5, "the image is shown at the tablet's size");
  await shot("tablet");

  // Touch: one finger swipes through slices, two fingers pinch to zoom.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Emulation.setTouchEmulationEnabled", { enabled: true, maxTouchPoints: 5 });
  const vp = await page.locator(".viewport").first().boundingBox();
  const [cx, cy] = [vp.x + vp.width / 2, vp.y + vp.height / 2];
  const touch = (type, points) => cdp.send("Input.dispatchTouchEvent", { type, touchPoints: points });
  const sliceBefore = await page.evaluate(() => window.strata.viewports[0].view.slice);
  await touch("touchStart", [{ x: cx, y: cy - 60 }]);
  for (let i = 1; i <= 10; i++) await touch("touchMove", [{ x: cx, y: cy - 60 + i * 8 }]);
  await touch("touchEnd", []);
  await page.waitForFunction((s) => window.strata.viewports[0].stats.slice === s, sliceBefore - 10, { timeout: 10000 });
  check((await page.textContent(".overlay.bl")).includes(`Slice ${sliceBefore - 10 + 1}/`),
    `a swipe scrolls 10 slices (from ${sliceBefore + 1} to ${sliceBefore - 10 + 1})`);
  await page.waitForTimeout(300);
  const swiped = await viewportPixels();
  await shot("touch-swipe");
  await touch("touchStart", [{ x: cx - 30, y: cy }, { x: cx + 30, y: cy }]);
  for (let i = 1; i <= 10; i++) await touch("touchMove", [{ x: cx - 30 - i * 3, y: cy }, { x: cx + 30 + i * 3, y: cy }]);
  await touch("touchEnd", []);
  await page.waitForFunction(() => Math.abs(window.strata.viewports[0].view.zoom - 2) < 0.01, null, { timeout: 10000 });
  await page.waitForTimeout(400);
  const pinched = await viewportPixels();
  check((await page.textContent(".overlay.br")).includes("Zoom 200%") && differ(swiped, pinched),
    "a pinch zooms to 200% and the picture changes");
  await shot("touch-pinch");

  // A lost connection: the server goes away and comes back; the view is where it was.
  await page.waitForSelector(".badge.lossless", { timeout: 10000 });
  const kept = await page.evaluate(() => {
    const v = window.strata.viewports[0];
    return { view: JSON.stringify(v.view), slice: v.stats.slice, frames: v.stats.frames };
  });
  const beforeLoss = await viewportPixels();
  const overlayBefore = await page.textContent(".overlay.br");
  // The message may be up only for as long as the reconnection takes (another node answers at
  // once): the page notes that it was shown.
  await page.evaluate(() => {
    const box = document.querySelector("#message");
    const seen = () => { if (box.textContent.includes("Connection to the server lost")) window.lostShown = true; };
    new MutationObserver(seen).observe(box, { childList: true, characterData: true, subtree: true, attributes: true });
  });
  console.log("restart-server");
  await page.waitForFunction(() => window.lostShown === true, null, { timeout: 10000 });
  check(true, "a lost connection is said so");
  await shot("connection-lost");
  const answer = await stdin.next();
  if (answer.done || answer.value !== "restarted") throw new Error("the server was not restarted");
  await page.waitForSelector("#message", { state: "hidden", timeout: 20000 });
  await page.waitForFunction((n) => window.strata.viewports[0].stats.frames > n, kept.frames, { timeout: 20000 });
  await page.waitForSelector(".badge.lossless", { timeout: 10000 });
  await page.waitForTimeout(200);
  const afterLoss = await viewportPixels();
  const now = await page.evaluate(() => {
    const v = window.strata.viewports[0];
    return { view: JSON.stringify(v.view), slice: v.stats.slice };
  });
  const drift = Math.abs(beforeLoss.mean - afterLoss.mean) + Math.abs(beforeLoss.std - afterLoss.std);
  check(now.view === kept.view && now.slice === kept.slice && drift < 0.5
    && (await page.textContent(".overlay.br")) === overlayBefore,
    `after the server came back the view is where it was (slice ${now.slice + 1}, pixel drift ${drift.toFixed(3)})`);
  await shot("reconnected");
  const me = await page.evaluate(async () => {
    const r = await fetch("/api/me");
    return { status: r.status, user: r.ok ? (await r.json()).user : null };
  });
  check(me.status === 200 && me.user === env("RAD_USER") && await page.locator("form#login").count() === 0,
    `the signed-in session holds after the reconnection (${me.status} ${me.user})`);
  await cdp.send("Emulation.setTouchEmulationEnabled", { enabled: false });

  // A study whose pixels cannot be decoded says so, in the viewport.
  await page.evaluate((uid) => { location.hash = `#/study/${uid}`; }, env("BROKEN_STUDY"));
  await page.waitForSelector(".vp-error:not([hidden])", { timeout: 10000 });
  const why = await page.textContent(".vp-error");
  check(/cannot be (shown|rendered)/.test(why) && why.includes("decod"), `a study that cannot be rendered is said so: "${why}"`);
  check(await page.locator("#thumbs .no-thumb").count() === 1, "its thumbnail says there is no preview");
  await shot("cannot-render");

  // An expired session says so and asks to log in again.
  await page.evaluate(() => fetch("/api/logout", { method: "POST" }));
  await page.evaluate(() => { location.hash = "#/studies"; });
  await page.waitForSelector("form#login");
  check((await page.textContent("#message")).includes("session has expired"), "an expired session is said so");
  await shot("session-expired");
  await page.setViewportSize({ width: 1280, height: 800 });

  // Administrator: the person view with studies from two issuers.
  await login(env("ADMIN_USER"), env("ADMIN_PASSWORD"));
  await page.fill("input[name=name]", env("PATIENT"));
  await page.click("form#search button[type=submit]");
  // The list before the search (every study, the broken one too) stays on screen until the
  // search's own list replaces it: wait for that one.
  await page.waitForFunction(([study, broken]) => location.hash.includes("name=")
    && document.querySelector(`#studies tr[data-study="${study}"]`)
    && !document.querySelector(`#studies tr[data-study="${broken}"]`), [STUDY, env("BROKEN_STUDY")]);
  check(await page.locator("#studies tr[data-study] ").count() >= 2, "both studies are listed");
  await page.click(`#studies tr[data-study="${STUDY}"] a.person-link`);
  await page.waitForSelector("#person .identities tr");
  const issuers = await page.$$eval("#person .identities tr td:first-child", (tds) => [...new Set(tds.map((t) => t.textContent))]);
  check(issuers.length >= 2, `the person has identities from two issuers (${issuers.join(", ")})`);
  check(await page.locator("#person .timeline li").count() >= 2, "the timeline shows both studies");
  check(await page.locator("a[href='#/review']").count() >= 1, "an admin can open the review queue");
  await shot("person-view");

  // The admin may download originals.
  await page.goto(`${BASE}/#/study/${STUDY}`);
  await page.waitForSelector("#download");
  await shot("admin-viewer");

  // The admin's accounts page: users, tokens and sessions, managed in place.
  await page.goto(`${BASE}/#/accounts`);
  await page.waitForSelector("#users tr[data-user]");
  const accounts = await page.$$eval("#users tr[data-user]", (trs) => trs.map((t) => t.dataset.user));
  check(accounts.includes(env("RAD_USER")) && accounts.includes(env("ADMIN_USER")), `the accounts page lists the users (${accounts.join(", ")})`);
  check(await page.locator(`#sessions tr[data-session] td:nth-child(2):text-is("${env("ADMIN_USER")}")`).count() >= 1, "the admin's own session is listed");
  await page.click(`#users tr[data-user="${env("RAD_USER")}"] button.toggle`);
  await page.waitForSelector(`#users tr[data-user="${env("RAD_USER")}"] td:has-text("disabled")`);
  await page.click(`#users tr[data-user="${env("RAD_USER")}"] button.toggle`);
  await page.waitForSelector(`#users tr[data-user="${env("RAD_USER")}"] button.toggle:text-is("Disable")`);
  check(!(await page.textContent(`#users tr[data-user="${env("RAD_USER")}"]`)).includes("disabled"),
    "a user is disabled and enabled again from the accounts page");
  await shot("accounts");

  // A user added there must change the password the admin chose before anything else.
  await page.fill("#add-user input[name=name]", "newcomer");
  await page.selectOption("#add-user select[name=role]", "radiologist");
  await page.fill("#add-user input[name=password]", "a first password");
  await page.click("#add-user button[type=submit]");
  await page.waitForSelector('#users tr[data-user="newcomer"] td:has-text("must change password")');
  await page.click("#logout");
  await page.waitForSelector("form#login");
  await login("newcomer", "a first password");
  await page.waitForSelector("form#password");
  check((await page.textContent("form#password")).includes("must be changed"), "a new user is asked for a new password first");
  await page.fill("form#password input[name=old]", "a first password");
  await page.fill("form#password input[name=new]", "a second password");
  await page.fill("form#password input[name=again]", "a second password");
  await page.click("form#password button[type=submit]");
  await page.waitForSelector("form#search");
  check(await page.locator("form#password").count() === 0, "once changed, the study list opens");
  await shot("password-changed");
  console.log(JSON.stringify(results));
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  lines.close();
  await close();
}
