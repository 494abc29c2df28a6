// What every browser test script here shares: Debian's headless Chromium through
// playwright-core, with a profile under OMNI_OUT; console errors collected; `step(NAME)`
// printing "step NAME" lines (and a screenshot as each step begins when OMNI_SHOTS names
// a folder); `finish()` at the end (fails on console errors, exits 0) and `fail(e)` in
// the script's catch (a screenshot and the page's HTML under OMNI_OUT, "fail STEP: why",
// exit 1). The Rust runner is crates/omnipeer/tests/omni/web.rs.

import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** An environment variable the runner must set. */
export const env = (k) => {
  const v = process.env[k];
  if (v === undefined || v === "") throw new Error(`${k} is not set`);
  return v;
};

/** The selector of an element by its `data-testid`. */
export const byTest = (id) => `[data-testid="${id}"]`;

/** Start the browser; `ignoreConsole(text)` says which console errors are expected. */
export async function launch(out, { ignoreConsole = () => false } = {}) {
  mkdirSync(out, { recursive: true });
  const context = await chromium.launchPersistentContext(join(out, "chromium-profile"), {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !ignoreConsole(m.text())) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));

  let stepName = "start";
  const shots = process.env.OMNI_SHOTS || "";
  if (shots) mkdirSync(shots, { recursive: true });
  let shot = 0;
  async function step(name) {
    if (shots) await page.screenshot({ path: join(shots, `${String(++shot).padStart(2, "0")}-before-${name}.png`), fullPage: true });
    stepName = name;
    console.log(`step ${name}`);
  }

  async function finish() {
    if (consoleErrors.length) throw new Error(`console errors: ${JSON.stringify(consoleErrors)}`);
    await step("done");
    await context.close();
    process.exit(0);
  }

  async function fail(e) {
    const shotPath = join(out, `failure-${stepName}.png`);
    try {
      await page.screenshot({ path: shotPath, fullPage: true });
      writeFileSync(join(out, `failure-${stepName}.html`), await page.content());
    } catch {
      // the page is gone
    }
    console.log(`fail ${stepName}: ${e.message.split("\n")[0]}`);
    console.log(`screenshot ${shotPath}`);
    if (consoleErrors.length) console.log(`console ${JSON.stringify(consoleErrors)}`);
    await context.close().catch(() => {});
    process.exit(1);
  }

  return { context, page, consoleErrors, step, finish, fail };
}
