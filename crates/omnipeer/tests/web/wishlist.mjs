// The wishlist in the web UI (Debian's headless Chromium, playwright-core), as slskd or
// AirDC++ users use it: a search with an extension filter is saved from the Search view
// as a wishlist item that downloads new matches by itself; it shows in the Wishlist view
// with its filters and its first run. An item added with the Wishlist view's own form is
// listed and removed. Then node A shares two matching files (only one passes the
// filter), the item is run with its Run button, the new match is marked live, the file
// is downloaded by itself (its Transfers row done; the other file is not fetched) and
// "Mark seen" clears the mark.
// Run by ../node_search_web.rs, which starts the nodes and passes (environment):
//   OMNI_URL      the web UI of the node under test, B (http://127.0.0.1:PORT/)
//   OMNI_A_API    node A's API (http://127.0.0.1:PORT), to rescan its share
//   OMNI_A_TOKEN  (optional) node A's API token
//   OMNI_A_SHARE  node A's share folder, where the files are put
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS    (optional) a folder for a screenshot as each step begins
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const URL = env("OMNI_URL");
const A_API = env("OMNI_A_API");
const A_TOKEN = process.env.OMNI_A_TOKEN || "";
const A_SHARE = env("OMNI_A_SHARE");
const OUT = env("OMNI_OUT");
const T = 30_000;
const QUERY = "zeta track";
const WANT = "zeta track.flac";
const OTHER = "zeta track.mp3";

const { page, step, finish, fail } = await launch(OUT);
// "Remove this saved search?": yes.
page.on("dialog", (d) => d.accept());
const item = (query) => page.locator(`${byTest("wishlist-item")}[data-query="${query}"]`);

/** A request to node A's API. */
async function aApi(method, path) {
  const headers = A_TOKEN ? { Authorization: `Bearer ${A_TOKEN}` } : {};
  const res = await fetch(`${A_API}${path}`, { method, headers: { ...headers, "Content-Type": "application/json" }, body: method === "GET" ? undefined : "{}" });
  if (!res.ok) throw new Error(`${method} ${path} on node A: ${res.status}`);
  return res.json().catch(() => null);
}

try {
  await step("open");
  await page.goto(`${URL}#search`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: T });

  await step("save-from-search");
  await page.locator(byTest("search-input")).fill(QUERY);
  await page.locator(byTest("search-ext")).fill("flac");
  await page.locator(byTest("search-save-auto")).check();
  await page.locator(byTest("search-save-wishlist")).click();
  await page.locator(byTest("toast")).filter({ hasText: "wishlist" }).first().waitFor({ timeout: T });

  await step("listed");
  await page.locator(byTest("tab-wishlist")).click();
  const it = item(QUERY);
  await it.waitFor({ timeout: T });
  const filters = (await it.locator(byTest("wishlist-filters")).textContent()).trim();
  if (!filters.includes("flac")) throw new Error(`the item's filters show ${JSON.stringify(filters)}`);
  const auto = (await it.locator(byTest("wishlist-auto")).textContent()).trim();
  if (auto !== "yes") throw new Error(`auto-download shows ${JSON.stringify(auto)}`);
  // It ran at once (and found nothing yet).
  await it.locator(byTest("wishlist-last-run")).filter({ hasNotText: "not yet" }).waitFor({ timeout: T });
  if ((await it.locator(byTest("wishlist-new")).textContent()).trim() !== "0") throw new Error("new matches before any file is shared");

  await step("add-and-remove");
  await page.locator(byTest("wishlist-query")).fill("omega nothing");
  await page.locator(byTest("wishlist-min-size")).fill("1M");
  await page.locator(byTest("wishlist-network")).selectOption("slsk");
  await page.locator(byTest("wishlist-add")).click();
  const other = item("omega nothing");
  await other.waitFor({ timeout: T });
  const f2 = (await other.locator(byTest("wishlist-filters")).textContent()).trim();
  if (!f2.includes("1.00 MiB") || !f2.includes("Soulseek")) throw new Error(`the second item's filters show ${JSON.stringify(f2)}`);
  if ((await other.locator(byTest("wishlist-auto")).textContent()).trim() !== "no") throw new Error("the second item auto-downloads");
  await other.locator(byTest("wishlist-remove")).click();
  await other.waitFor({ state: "detached", timeout: T });
  await it.waitFor({ timeout: T });

  await step("share-on-a");
  const before = (await aApi("GET", "/api/status")).shares.files;
  mkdirSync(join(A_SHARE, "music"), { recursive: true });
  writeFileSync(join(A_SHARE, "music", WANT), Buffer.alloc(400_000, 7));
  writeFileSync(join(A_SHARE, "music", OTHER), Buffer.alloc(300_000, 9));
  await aApi("POST", "/api/shares/rescan");
  const end = Date.now() + T;
  for (;;) {
    const s = (await aApi("GET", "/api/status")).shares;
    if (s.state === "ready" && s.files >= before + 2) break;
    if (Date.now() > end) throw new Error(`node A's share did not take the files: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }

  await step("run");
  // Run now (hubs would wait 10 minutes); a run may go out just before A's sessions have
  // the new share, so it is run again until the match shows (each run waits for it).
  const fresh = it.locator(`${byTest("wishlist-new")}.fresh`);
  for (let attempt = 1; ; attempt++) {
    await it.locator(byTest("wishlist-run")).click();
    try {
      await fresh.waitFor({ timeout: 20_000 });
      break;
    } catch (e) {
      if (attempt >= 4) throw e;
    }
  }
  await it.locator(byTest("wishlist-match")).filter({ hasText: WANT }).waitFor({ timeout: T });
  await page.locator(byTest("wishlist-badge")).filter({ hasText: "1" }).waitFor({ timeout: T });

  await step("downloaded");
  await page.locator(byTest("tab-transfers")).click();
  const row = page.locator(`${byTest("transfer-row")}[data-name="${WANT}"]`);
  await row.and(page.locator('[data-state="done"]')).waitFor({ timeout: 2 * T });
  if (await page.locator(`${byTest("transfer-row")}[data-name="${OTHER}"]`).count()) throw new Error(`${OTHER} was fetched though the filter wants flac`);

  await step("seen");
  await page.locator(byTest("tab-wishlist")).click();
  await it.locator(byTest("wishlist-seen")).click();
  await it.locator(`${byTest("wishlist-new")}:not(.fresh)`).filter({ hasText: "0" }).waitFor({ timeout: T });
  await page.locator(byTest("wishlist-badge")).waitFor({ state: "hidden", timeout: T });

  await finish();
} catch (e) {
  await fail(e);
}
