// What the viewer's browser scripts share: Debian's chromium with the flags the tests use, a
// fresh profile, checks that fail loudly, numbered screenshots, signing in, and statistics of
// the pixels a viewport shows on screen.

import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A variable of the environment; throws when it is not set. */
export const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};

/** Chromium (CHROMIUM, else Debian's) headless on a fresh profile; `close()` removes it. */
export async function launch(viewport = { width: 1280, height: 800 }) {
  const profile = mkdtempSync(join(tmpdir(), "strata-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Throws with `what` unless `condition`; says `ok: what` on stderr otherwise. */
export function check(condition, what) {
  if (!condition) throw new Error(`failed: ${what}`);
  console.error(`ok: ${what}`);
}

/** Numbered screenshots of `page()` under `dir`, named by step. */
export function shooter(dir, page, prefix = "") {
  mkdirSync(dir, { recursive: true });
  let step = 0;
  return async (name) => {
    step += 1;
    await page().screenshot({ path: join(dir, `${prefix}${String(step).padStart(2, "0")}-${name}.png`) });
  };
}

export async function login(page, base, user, password) {
  await page.goto(`${base}/`);
  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", password);
  await page.click("form#login button[type=submit]");
  await page.waitForSelector("#who:has-text('" + user + "')");
}

/** Statistics of what viewport `n` shows on screen (mean, spread, a fingerprint). */
export async function viewportPixels(page, n = 0) {
  const png = await page.locator(".viewport").nth(n).screenshot();
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0; let sq = 0; let hash = 0;
    for (let i = 0; i < d.length; i += 4) {
      sum += d[i]; sq += d[i] * d[i];
      hash = (hash * 31 + d[i]) >>> 0;
    }
    const count = d.length / 4;
    const mean = sum / count;
    return { mean, std: Math.sqrt(sq / count - mean * mean), hash };
  }, png.toString("base64"));
}

/** Whether two viewport statistics show different pictures. */
export const differ = (a, b) => a.hash !== b.hash && Math.abs(a.mean - b.mean) + Math.abs(a.std - b.std) > 0.05;
