// The Search view as a Nicotine+ or slskd user uses it (Debian's headless Chromium,
// playwright-core): a search that finds nothing says "searching…", names only the
// networks it went to, and once finished says "no results" plainly; a search that finds
// files lists each source on its own row with its own network's figures (NMDC slots,
// Soulseek queue and speed), and the filter bar (extension, size, network) narrows the
// results through the API, saying "no results" when nothing passes.
// Run by ../node_search_web.rs, which starts the nodes and passes (environment):
//   OMNI_URL      the web UI of the node under test (http://127.0.0.1:PORT/)
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS    (optional) a folder for a screenshot as each step begins
// Node A shares docs/beta notes.txt (200,000 bytes) and docs/beta notes.pdf (50,000).
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";

const URL = env("OMNI_URL");
const OUT = env("OMNI_OUT");
const T = 30_000;
// A search takes results for 60 s (app::search::SEARCH_LIFETIME), then is finished.
const FINISH = 120_000;

const { page, step, finish, fail } = await launch(OUT);
const result = (name) => page.locator(`${byTest("search-result")}[data-name="${name}"]`);
const text = async (sel) => ((await page.locator(sel).textContent()) || "").trim();

try {
  await step("open");
  await page.goto(`${URL}#search`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: T });

  await step("search-nothing");
  await page.locator(byTest("search-input")).fill("quetzal nothing matches");
  await page.locator(byTest("search-submit")).click();
  await page.locator(byTest("search-state")).filter({ hasText: "searching…" }).waitFor({ timeout: T });
  const summary = await text(byTest("search-summary"));
  if (!summary.includes("sent to Direct Connect (NMDC) and Soulseek")) throw new Error(`the summary does not say where it went: ${summary}`);
  if (summary.includes("Tox")) throw new Error(`the summary names Tox, which cannot search: ${summary}`);

  await step("search-beta");
  await page.locator(byTest("search-input")).fill("beta notes");
  await page.locator(byTest("search-submit")).click();
  for (const name of ["beta notes.txt", "beta notes.pdf"]) {
    await result(name).locator(".net.n-nmdc").first().waitFor({ timeout: T });
    await result(name).locator(".net.n-slsk").first().waitFor({ timeout: T });
  }

  await step("per-source-figures");
  // One row per source, each with its own network's figures: never one sum.
  const txt = result("beta notes.txt");
  await txt.locator(`${byTest("result-sources")} summary`).click();
  const nmdc = txt.locator(`${byTest("result-source")}[data-network="nmdc"]`);
  const slsk = txt.locator(`${byTest("result-source")}[data-network="slsk"]`);
  await nmdc.waitFor({ timeout: T });
  await slsk.waitFor({ timeout: T });
  if ((await txt.locator(byTest("result-source")).count()) !== 2) throw new Error("not one row per source");
  const nf = (await nmdc.locator(byTest("source-figures")).textContent()).trim();
  const sf = (await slsk.locator(byTest("source-figures")).textContent()).trim();
  if (!/\d+ of \d+ slots free/.test(nf)) throw new Error(`the NMDC source shows ${JSON.stringify(nf)}, not its slots`);
  if (!/queue \d+/.test(sf) || !sf.includes("/s")) throw new Error(`the Soulseek source shows ${JSON.stringify(sf)}, not its queue and speed`);
  if (/queue/.test(nf) || /slots free/.test(sf)) throw new Error(`figures of one network on another's source: ${nf} | ${sf}`);

  await step("filter-ext");
  await page.locator(byTest("search-ext")).fill("pdf");
  await result("beta notes.txt").waitFor({ state: "detached", timeout: T });
  await result("beta notes.pdf").waitFor({ timeout: T });
  if (!(await text(byTest("search-summary"))).includes("1 shown")) throw new Error(`the summary does not say how many pass: ${await text(byTest("search-summary"))}`);

  await step("filter-network-and-size");
  await page.locator(byTest("search-ext")).fill("");
  await page.locator(byTest("search-network")).selectOption("slsk");
  await page.locator(byTest("search-min-size")).fill("100k");
  await result("beta notes.pdf").waitFor({ state: "detached", timeout: T });
  await result("beta notes.txt").locator(".net.n-slsk").first().waitFor({ timeout: T });
  if (await result("beta notes.txt").locator(".net.n-nmdc").count()) throw new Error("the network filter kept an NMDC source");

  await step("filter-nothing-passes");
  await page.locator(byTest("search-ext")).fill("xyz");
  await page.locator(byTest("search-empty")).filter({ hasText: "no results" }).waitFor({ timeout: T });
  if (await page.locator(byTest("search-result")).count()) throw new Error("results shown that do not pass");

  await step("filters-cleared");
  await page.locator(byTest("search-filters-clear")).click();
  await result("beta notes.txt").locator(".net.n-nmdc").first().waitFor({ timeout: T });
  await result("beta notes.pdf").waitFor({ timeout: T });
  if (await page.locator(byTest("search-empty")).isVisible()) throw new Error("still says no results");

  await step("finished-empty");
  // Back to the first search: once its time is up it says so, and that nothing came.
  const first = await page.locator(`${byTest("search-history")} option`).filter({ hasText: "quetzal" }).getAttribute("value");
  await page.locator(byTest("search-history")).selectOption(first);
  await page.locator(byTest("search-state")).filter({ hasText: "finished" }).waitFor({ timeout: FINISH });
  await page.locator(byTest("search-empty")).filter({ hasText: "no results" }).waitFor({ timeout: T });
  const s2 = await text(byTest("search-summary"));
  if (!s2.includes("no results")) throw new Error(`the summary of a finished empty search: ${s2}`);

  await finish();
} catch (e) {
  await fail(e);
}
