// Browsing a user and downloading a folder in the web UI (Debian's headless Chromium,
// playwright-core), as a user would: from the hub's user list (alice's row, "Browse"),
// alice's share over NMDC opens as a tree with folder sizes and counts; her Album folder
// is downloaded whole and shows as one folder download in Transfers until done. Then,
// from a search result's Soulseek source ("Browse user"), her share opens again over
// Soulseek; "find" shows the Album folder; downloading it again warns that its files are
// on disk already (the user says no), and a download into another place (a destination
// template) completes as a group too.
// Run by ../node_browse_web.rs, which starts the nodes and passes (environment):
//   OMNI_URL      the web UI of the node under test (http://127.0.0.1:PORT/)
//   OMNI_QUERY    a search that finds a file of alice's Album
//   OMNI_DEST     the destination template for the second download
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS    (optional) a folder for a screenshot as each step begins
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";

const URL = env("OMNI_URL");
const QUERY = env("OMNI_QUERY");
const DEST = env("OMNI_DEST");
const OUT = env("OMNI_OUT");
const T = 60_000;

const { page, step, finish, fail } = await launch(OUT);
// The warning before files already on disk: the user says no, and picks another place.
const dialogs = [];
page.on("dialog", async (d) => {
  dialogs.push(d.message());
  await d.dismiss();
});
const folder = (name) => page.locator(`${byTest("browse-folder")}[data-name="${name}"]`).first();
/** Unfold the folders named `names`, one inside the other. */
async function unfold(...names) {
  for (const n of names) {
    const f = folder(n);
    await f.waitFor({ timeout: T });
    if (!(await f.locator("details").first().evaluate((d) => d.open))) await f.locator("summary").first().click();
  }
}

try {
  await step("open");
  await page.goto(`${URL}#status`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: T });
  await page.locator('[data-testid="network-row"][data-network="nmdc_client"][data-state="online"]').waitFor({ timeout: T });
  await page.locator('[data-testid="network-row"][data-network="slsk_client"][data-state="online"]').waitFor({ timeout: T });

  // From the hub's user list, as a user finds someone: alice's row, "Browse".
  await step("users-list");
  await page.locator(byTest("tab-chat")).click();
  await page.locator('[data-testid="chat-item"][data-chat="nmdc:hub"]').click();
  const alice = page.locator('[data-testid="chat-user"][data-nick="alice"]');
  await alice.waitFor({ timeout: T });

  await step("browse-nmdc");
  await alice.locator(byTest("user-browse")).click();
  await page.locator(byTest("browse-summary")).filter({ hasText: "4 files" }).waitFor({ timeout: T });
  const browsing = await page.locator(byTest("browse-user")).inputValue();
  if (browsing !== "alice") throw new Error(`the Browse view opened on ${JSON.stringify(browsing)}`);
  // The Browse tab's own form gives the same tree.
  await page.locator(byTest("browse-session")).selectOption("nmdc|");
  await page.locator(byTest("browse-submit")).click();
  await page.locator(byTest("browse-summary")).filter({ hasText: "4 files" }).waitFor({ timeout: T });
  await unfold("share", "music");
  const meta = await folder("Album").locator(byTest("browse-folder-meta")).first().textContent();
  if (!meta.includes("3 files")) throw new Error(`the Album folder says ${JSON.stringify(meta)}`);
  await unfold("Album", "scans");
  await page.locator(`${byTest("browse-file")}[data-name="cover.jpg"]`).waitFor({ timeout: T });

  await step("download-folder-nmdc");
  await folder("Album").locator(byTest("browse-download-folder")).first().click();
  await page.locator(byTest("toasts")).filter({ hasText: "Queued folder Album" }).waitFor({ timeout: T });
  await page.locator(byTest("tab-transfers")).click();
  await page.locator(`${byTest("transfer-group")}[data-name="Album"][data-state="done"]`).first().waitFor({ timeout: T });
  const pct = await page.locator(`${byTest("transfer-group")}[data-name="Album"] ${byTest("transfer-group-percent")}`).first().textContent();
  if (pct !== "100%") throw new Error(`the finished folder shows ${pct}`);

  await step("browse-user-from-search");
  await page.locator(byTest("tab-search")).click();
  await page.locator(byTest("search-input")).fill(QUERY);
  await page.locator(byTest("search-submit")).click();
  const result = page.locator(byTest("search-result")).first();
  await result.waitFor({ timeout: T });
  // Until the Soulseek source has arrived.
  await result.locator(".net.n-slsk").first().waitFor({ timeout: T });
  await result.locator(`${byTest("result-sources")} summary`).click();
  const slsk = result.locator(byTest("result-source")).filter({ has: page.locator(".net.n-slsk") }).first();
  await slsk.locator(byTest("browse-user-button")).click();
  await page.locator(`${byTest("view-browse")}:not([hidden])`).waitFor({ timeout: T });
  await page.locator(byTest("browse-summary")).filter({ hasText: "Soulseek" }).filter({ hasText: "4 files" }).waitFor({ timeout: T });

  await step("find-and-download-slsk");
  await page.locator(byTest("browse-filter")).fill("album");
  const hit = page.locator(`${byTest("browse-hit")}.folder`).first();
  await hit.waitFor({ timeout: T });
  await hit.locator(byTest("browse-download-folder")).click();
  // The same files are on disk from the first download: a warning first, and no.
  await page.locator(byTest("browse-note")).filter({ hasText: "already on disk" }).waitFor({ timeout: T });
  if (dialogs.length !== 1 || !dialogs[0].includes("already on disk")) throw new Error(`dialogs: ${JSON.stringify(dialogs)}`);
  await hit.locator(byTest("browse-download-folder")).and(page.locator(":enabled")).waitFor({ timeout: T });
  await page.locator(byTest("browse-destination")).fill(DEST);
  await hit.locator(byTest("browse-download-folder")).click();
  await page.locator(byTest("toasts")).filter({ hasText: "Queued folder Album" }).waitFor({ timeout: T });
  if (dialogs.length !== 1) throw new Error(`a warning for a place with nothing in it: ${JSON.stringify(dialogs)}`);
  await page.locator(byTest("tab-transfers")).click();
  await page.locator(`${byTest("transfer-group")}[data-name="Album"][data-state="done"]`).nth(1).waitFor({ timeout: T });

  // A search result's folder, whole: the plan finds Album's files on disk already and
  // asks first (the user says no).
  await step("download-folder-from-search");
  await page.locator(byTest("tab-search")).click();
  const nmdcSource = result.locator(byTest("result-source")).filter({ has: page.locator(".net.n-nmdc") }).first();
  await nmdcSource.waitFor({ state: "attached", timeout: T });
  if (!(await nmdcSource.isVisible())) await result.locator(`${byTest("result-sources")} summary`).click();
  await nmdcSource.locator(byTest("download-folder-button")).click();
  await nmdcSource.locator(byTest("download-folder-button")).and(page.locator(":enabled")).waitFor({ timeout: T });
  if (dialogs.length !== 2 || !dialogs[1].includes("of Album already on disk")) throw new Error(`dialogs: ${JSON.stringify(dialogs)}`);

  await finish();
} catch (e) {
  await fail(e);
}
