// The access letter page as its holder uses it, with no account: a wrong code is refused with
// the archive's reason; the letter's code shows its studies; the passcode downloads the copy,
// which the browser saves as it arrives.
// BASE: the archive; CODE: the letter's code; PASSCODE: its passcode; STUDIES: how many
// studies it shows; OUT: where the download and the screenshot go.

import { join } from "node:path";
import { check, env, launch } from "./lib.mjs";

const browser = await launch();
try {
  const page = await browser.context.newPage();
  await page.goto(`${env("BASE")}/letter`, { waitUntil: "load" });
  await page.fill("#code", "0000-0000-0000-0000-0000");
  await page.click("form#open button[type=submit]");
  await page.waitForSelector("#message:not([hidden])");
  check((await page.textContent("#message")).includes("no letter has this access code"),
    "a wrong code is refused with the archive's reason");
  check(await page.locator("#studies").isHidden(), "a wrong code shows no studies");
  await page.fill("#code", env("CODE"));
  await page.click("form#open button[type=submit]");
  await page.waitForSelector("#studies:not([hidden]) tr.study");
  const rows = await page.locator("tr.study").count();
  check(rows === Number(env("STUDIES")), `the letter shows ${rows} studies`);
  await page.fill("#passcode", env("PASSCODE"));
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click("form#download button[type=submit]"),
  ]);
  check(download.suggestedFilename().endsWith(".zip.gpg"), `saved as ${download.suggestedFilename()}`);
  await download.saveAs(join(env("OUT"), "browser.zip.gpg"));
  check(!(await download.failure()), "the download completed");
  await page.screenshot({ path: join(env("OUT"), "letter.png"), fullPage: true });
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
