// The page of a media export (INDEX.HTM) opened from the unzipped folder, as someone without a
// DICOM viewer would open it: every series has a picture, and every picture loaded.
// DIR: the unzipped export; SERIES: how many series it holds; OUT: where the screenshot goes.

import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { check, env, launch } from "./lib.mjs";

const browser = await launch();
try {
  const page = await browser.context.newPage();
  await page.goto(pathToFileURL(join(env("DIR"), "INDEX.HTM")).href, { waitUntil: "load" });
  const images = await page.$$eval("img", (imgs) => imgs.map((i) => ({
    src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth,
  })));
  const series = Number(env("SERIES"));
  check(images.length === series, `the page shows ${images.length} pictures for ${series} series`);
  for (const i of images) check(i.loaded, `picture ${i.src} loaded (${i.width} pixels wide)`);
  check(await page.locator("section.study").count() >= 1, "the page lists the studies");
  await page.screenshot({ path: join(env("OUT"), "index.png"), fullPage: true });
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
