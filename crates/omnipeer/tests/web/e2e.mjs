// Drives a node's web UI in Debian's headless Chromium (playwright-core), as a user
// would: the networks come online, a search finds a file live, it is downloaded and its
// progress bar moves (paused part-way it stands still; resumed it goes on from there) to
// done, another file comes from its Soulseek source, chat lines go out (hub, room,
// private) and replies come in, a file dropped into the share folder shows up after
// Rescan; then the peer leaves (the status shows it) and a download that cannot run is
// paused, resumed, cancelled and retried; last the node restarts and the page reconnects
// by itself.
// Run by ../web_ui.rs, which starts the nodes and passes (environment):
//   OMNI_URL        the web UI of the node under test (http://127.0.0.1:PORT/)
//   OMNI_QUERY      what to search for
//   OMNI_FILE       the file name the search must find (and that is downloaded)
//   OMNI_FILE2      another file the search finds, queued after its source left
//   OMNI_FILE3      a third one, downloaded from its Soulseek source
//   OMNI_SIZE       the size of OMNI_FILE in bytes
//   OMNI_PEER       the nick of the node that shares it
//   OMNI_CHATS      JSON [{"chat": ID, "say": TEXT, "reply": TEXT, "away": BOOL}]: in each
//                   chat (as the node names it; opened with "New conversation" when not
//                   listed), say a line and wait for the peer's reply; "away": look at
//                   another tab meanwhile (the peer waits a second), the reply counts as
//                   unread there
//   OMNI_TOKEN      the node's API token, when it has one (the page must ask for it)
//   OMNI_OUT        a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS      (optional) a folder for a screenshot at each step and of each view
// Prints one line per step ("step NAME ...") and facts as "fact KEY VALUE" on stdout;
// exits 1 (after a screenshot) on the first thing that does not happen.

import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined || v === "") throw new Error(`${k} is not set`);
  return v;
};
const URL = env("OMNI_URL");
const QUERY = env("OMNI_QUERY");
const FILE = env("OMNI_FILE");
const FILE2 = env("OMNI_FILE2");
const FILE3 = env("OMNI_FILE3");
const SIZE = Number(env("OMNI_SIZE"));
const PEER = env("OMNI_PEER");
const CHATS = JSON.parse(env("OMNI_CHATS"));
const OUT = env("OMNI_OUT");
const TOKEN = process.env.OMNI_TOKEN || "";
const SHARED = "bob-shares-this.txt";
const T = 30_000; // the longest any one thing a user waits for may take

mkdirSync(OUT, { recursive: true });
const profile = join(OUT, "chromium-profile");

const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
});
const page = context.pages()[0] || (await context.newPage());
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));

let stepName = "start";
let shot = 0;
// OMNI_SHOTS=DIR: also a screenshot as each step begins (for looking at the UI).
const SHOTS = process.env.OMNI_SHOTS || "";
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
async function step(name, extra = "") {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${String(++shot).padStart(2, "0")}-before-${name}.png`), fullPage: true });
  stepName = name;
  console.log(`step ${name}${extra ? " " + extra : ""}`);
}
function fact(k, v) {
  console.log(`fact ${k} ${v}`);
}

const byTest = (id) => `[data-testid="${id}"]`;

try {
  await step("open", URL);
  await page.goto(URL, { waitUntil: "domcontentloaded" });
  if (TOKEN) {
    // The node answers 401: the page asks for its token (kept in localStorage).
    await step("token");
    const dlg = page.locator(byTest("token-dialog"));
    await dlg.waitFor({ state: "visible", timeout: T });
    await page.getByLabel("API token", { exact: true }).fill(TOKEN);
    await page.locator(byTest("token-submit")).click();
    await dlg.waitFor({ state: "hidden", timeout: T });
    const kept = await page.evaluate(() => localStorage.getItem("omnipeer.token"));
    if (kept !== TOKEN) throw new Error("the token was not kept in localStorage");
    // The browser logs the 401 answers that made the page ask; nothing else may fail.
    consoleErrors.length = 0;
  }
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: T });

  await step("networks-online");
  await page.locator(byTest("tab-status")).click();
  for (const net of ["nmdc_client", "slsk_client"]) {
    const row = page.locator(`${byTest("network-row")}[data-network="${net}"]`);
    await row.and(page.locator('[data-state="online"]')).waitFor({ timeout: T });
    const shown = (await row.locator(byTest("network-state")).textContent()).trim();
    if (shown !== "online") throw new Error(`${net} shows ${shown}, not online`);
  }
  fact("nick", (await page.locator(byTest("nick")).textContent()).trim());

  // Keyboard: arrows move along the tabs; "/" jumps to the search box.
  await step("keyboard");
  await page.locator(byTest("tab-status")).focus();
  await page.keyboard.press("ArrowRight");
  if ((await page.locator(byTest("tab-search")).getAttribute("aria-selected")) !== "true") throw new Error("ArrowRight did not select the Search tab");
  if (!(await page.locator(byTest("view-search")).isVisible())) throw new Error("the Search panel is not shown");
  await page.keyboard.press("Home");
  if (!(await page.locator(byTest("view-status")).isVisible())) throw new Error("Home did not go back to Status");
  await page.locator("body").click({ position: { x: 5, y: 300 } });
  await page.keyboard.press("/");
  const box = page.getByLabel("Search every network");
  if (!(await box.evaluate((el) => el === document.activeElement))) throw new Error('"/" did not focus the search box');
  // Every control has a name a screen reader can say.
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea, button")]
      .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.textContent.trim() || el.getAttribute("title")))
      .map((el) => el.outerHTML.slice(0, 80)),
  );
  if (unnamed.length) throw new Error(`controls without a name: ${unnamed.join(" | ")}`);

  await step("search", QUERY);
  await box.fill(QUERY);
  await box.press("Enter");
  const t0 = Date.now();
  const result = page.locator(`${byTest("search-result")}[data-name="${FILE}"]`);
  await result.waitFor({ timeout: T });
  fact("first_result_ms", Date.now() - t0);
  // The same file shared on both networks is one result with a source on each.
  await result.locator(".sources").filter({ hasText: "NMDC" }).filter({ hasText: "Soulseek" }).waitFor({ timeout: T });
  fact("merged_result_ms", Date.now() - t0);
  const sizeTitle = await result.locator(byTest("result-size")).getAttribute("title");
  if (sizeTitle !== `${SIZE} bytes`) throw new Error(`result size shows ${sizeTitle}, want ${SIZE} bytes`);
  const sourcesText = await result.locator(byTest("result-sources")).locator("summary").textContent();
  if (!sourcesText.includes(PEER)) throw new Error(`the sources (${sourcesText}) do not name ${PEER}`);
  fact("sources", JSON.stringify(sourcesText.trim()));
  const summary = (await page.locator(byTest("search-summary")).textContent()).trim();
  if (!summary.includes("sent to Direct Connect (NMDC) and Soulseek")) throw new Error(`the search does not say where it went: ${summary}`);
  fact("search_summary", JSON.stringify(summary));

  await step("download");
  const dl = result.locator(byTest("download-button"));
  const t1 = Date.now();
  await dl.click();
  await result.locator(byTest("download-button")).filter({ hasText: "Queued" }).waitFor({ timeout: T });
  await page.locator(byTest("tab-transfers")).click();
  const row = page.locator(`${byTest("transfer-row")}[data-name="${FILE}"]`);
  await row.waitFor({ timeout: T });
  // Watch the bar (the node's download rate is limited, so it takes a few seconds):
  // record what it shows; a fifth of the way in, pause it, see it stand still, resume it
  // and see it go on from there.
  const seen = [];
  const pctOf = async () => Number((await row.locator(byTest("transfer-percent")).textContent()).trim().replace("%", ""));
  let pausedAt = null;
  let afterResume = [];
  const deadline = Date.now() + 4 * T;
  for (;;) {
    const state = await row.getAttribute("data-state");
    const pct = await pctOf();
    if (seen[seen.length - 1] !== `${state}:${pct}%`) seen.push(`${state}:${pct}%`);
    if (pausedAt !== null) afterResume.push(pct);
    if (state === "done") break;
    if (state === "failed" || state === "cancelled") {
      throw new Error(`the transfer ended ${state}: ${await row.locator(byTest("transfer-note")).textContent()}`);
    }
    if (pausedAt === null && state === "running" && pct >= 20 && pct <= 80) {
      const speed = (await row.locator(byTest("transfer-speed")).textContent()).trim();
      const eta = (await row.locator(byTest("transfer-eta")).textContent()).trim();
      if (!/\/s$/.test(speed)) throw new Error(`a running transfer shows no speed (${JSON.stringify(speed)})`);
      if (!eta) throw new Error("a running transfer shows no time left");
      fact("running_shows", JSON.stringify(`${pct}% ${speed} ${eta} left`));
      await step("pause-running");
      await row.locator(byTest("transfer-pause")).click();
      await row.and(page.locator('[data-state="paused"]')).waitFor({ timeout: T });
      // The bytes already in flight land on disk; then the node reports what it kept.
      await page.waitForTimeout(1000);
      pausedAt = await pctOf();
      if (!(pausedAt > 0)) throw new Error("a paused transfer lost its bytes");
      if ((await row.locator(byTest("transfer-speed")).textContent()).trim()) throw new Error("a paused transfer still shows a speed");
      await page.waitForTimeout(1500);
      const still = await pctOf();
      if (still !== pausedAt) throw new Error(`paused at ${pausedAt}%, but the bar went on to ${still}%`);
      fact("paused_at", `${pausedAt}%`);
      await step("resume");
      await row.locator(byTest("transfer-resume")).click();
    }
    if (Date.now() > deadline) throw new Error(`the transfer is still ${state} at ${pct}%`);
    await page.waitForTimeout(50);
  }
  await page.locator(byTest("toast")).filter({ hasText: `Downloaded ${FILE}` }).waitFor({ timeout: 3000 });
  fact("download_ms", Date.now() - t1);
  fact("progress_seen", JSON.stringify(seen));
  const partWay = seen.filter((x) => /^running:([1-9]|[1-9][0-9])%$/.test(x));
  if (partWay.length < 2) throw new Error(`the bar did not move part-way while running: ${seen.join(", ")}`);
  if (pausedAt === null) throw new Error(`never saw it running between 20% and 80%: ${seen.join(", ")}`);
  const low = Math.min(...afterResume);
  if (low < pausedAt) throw new Error(`after resume the bar fell back to ${low}% (paused at ${pausedAt}%): it started over`);
  const value = await row.locator(byTest("transfer-progress")).evaluate((el) => el.value);
  const pct = (await row.locator(byTest("transfer-percent")).textContent()).trim();
  const amount = (await row.locator(byTest("transfer-bytes")).textContent()).trim();
  if (value !== 1 || pct !== "100%") throw new Error(`done, but the bar shows ${value} (${pct})`);
  fact("done_amount", JSON.stringify(amount));
  fact("local_path", (await row.locator(".file .path").textContent()).trim());
  if ((await row.locator(byTest("transfer-state")).textContent()).trim() !== "done") throw new Error("the state column does not say done");
  // The node chose the NMDC source (it has a TTH to verify against).
  const from = (await row.locator(byTest("transfer-from")).textContent()).trim();
  if (from !== `${PEER} · NMDC`) throw new Error(`the transfer is from ${from}, not ${PEER} on NMDC`);
  // The filters: a finished download is under Done, not under Active.
  await page.locator(byTest("transfers-filter-active")).click();
  await row.waitFor({ state: "detached", timeout: T });
  await page.locator(byTest("transfers-filter-done")).click();
  await row.waitFor({ timeout: T });
  await page.locator(byTest("transfers-filter-all")).click();
  await row.waitFor({ timeout: T });
  // A finished download offers no pause/resume/cancel.
  for (const a of ["pause", "resume", "cancel"]) {
    if (await row.locator(byTest(`transfer-${a}`)).count()) throw new Error(`a done transfer still offers ${a}`);
  }

  // Another file, from the Soulseek source picked in the result's source list.
  await step("download-slsk", FILE3);
  await page.locator(byTest("tab-search")).click();
  const result3 = page.locator(`${byTest("search-result")}[data-name="${FILE3}"]`);
  await result3.locator(".sources").filter({ hasText: "Soulseek" }).waitFor({ timeout: T });
  await result3.locator(byTest("result-sources")).locator("summary").click();
  await result3.getByRole("button", { name: `Download ${FILE3} from ${PEER} on Soulseek` }).click();
  await page.locator(byTest("tab-transfers")).click();
  const row3 = page.locator(`${byTest("transfer-row")}[data-name="${FILE3}"]`);
  await row3.waitFor({ timeout: T });
  const from3 = (await row3.locator(byTest("transfer-from")).textContent()).trim();
  if (from3 !== `${PEER} · Soulseek`) throw new Error(`the transfer is from ${from3}, not ${PEER} on Soulseek`);
  await row3.and(page.locator('[data-state="done"], [data-state="failed"]')).waitFor({ timeout: 4 * T });
  if ((await row3.getAttribute("data-state")) !== "done") {
    throw new Error(`the Soulseek download failed: ${await row3.locator(byTest("transfer-note")).textContent()}`);
  }
  if ((await row3.locator(byTest("transfer-percent")).textContent()).trim() !== "100%") throw new Error("done, but not at 100%");
  fact("local_path3", (await row3.locator(".file .path").textContent()).trim());

  // The same transfer seen from the sharing node's page: an upload to bob, finished.
  if (process.env.OMNI_URL_A) {
    await step("uploads-on-a", FILE3);
    const pageA = await context.newPage();
    await pageA.goto(`${process.env.OMNI_URL_A}#uploads`, { waitUntil: "domcontentloaded" });
    const up = pageA.locator(`${byTest("upload-row")}[data-name="${FILE3}"][data-user="bob"]`);
    await up.and(pageA.locator('[data-state="done"]')).waitFor({ timeout: T });
    const to = (await up.locator(byTest("upload-to")).textContent()).trim();
    if (to !== "bob · Soulseek") throw new Error(`the upload is to ${to}, not bob on Soulseek`);
    if ((await up.locator(byTest("upload-percent")).textContent()).trim() !== "100%") throw new Error("the upload is done, but not at 100%");
    fact("upload_row", JSON.stringify((await up.innerText()).replace(/\s+/g, " ").trim()));
    await pageA.close();
  }

  await page.locator(byTest("tab-chat")).click();
  const input = page.locator(byTest("chat-input"));
  const log = page.locator(byTest("chat-log"));
  for (const c of CHATS) {
    await step("chat-send", `${c.chat}: ${c.say}`);
    const item = page.locator(`${byTest("chat-item")}[data-chat="${c.chat}"]`);
    if (await item.count()) {
      await item.click();
    } else {
      // A private message to someone new: "New conversation".
      const [net, kind, name] = c.chat.split(":");
      await page.getByLabel("Kind").selectOption(`${net}:${kind}`);
      await page.getByLabel("With (user) or room name").fill(name);
      await page.getByRole("button", { name: "Open", exact: true }).click();
      await item.waitFor({ timeout: T });
    }
    if ((await item.getAttribute("aria-current")) !== "true") throw new Error(`${c.chat} is not the open conversation`);
    await input.fill(c.say);
    await input.press("Enter");
    // Our line is stored (hub and room lines once the server echoes them: no longer "sending").
    await log.locator(`${byTest("chat-line")}[data-own="true"]:not(.pending)`).filter({ hasText: c.say }).waitFor({ timeout: T });
    if (await input.inputValue()) throw new Error("the send box was not emptied");

    await step("chat-reply", `${c.chat}: ${c.reply}`);
    const reply = log.locator(`${byTest("chat-line")}[data-own="false"]`).filter({ hasText: c.reply });
    if (c.away) {
      // Elsewhere in the page, the answer shows as unread: on the Chat tab and in the title.
      await page.locator(byTest("tab-status")).click();
      const badge = page.locator(byTest("chat-badge"));
      await badge.filter({ hasText: /^1$/ }).waitFor({ timeout: T });
      const title = await page.title();
      if (!title.startsWith("(1) ")) throw new Error(`the window title is ${JSON.stringify(title)}, not "(1) ..."`);
      await page.locator(byTest("tab-chat")).click();
      await badge.waitFor({ state: "hidden", timeout: T });
      if ((await page.title()).startsWith("(")) throw new Error("the title still counts unread lines after reading them");
    }
    await reply.waitFor({ timeout: T });
    const nick = (await reply.locator(byTest("chat-nick")).textContent()).trim();
    if (nick !== PEER) throw new Error(`the reply is from ${nick}, not ${PEER}`);
  }

  // Shares: drop a file into the share folder the page names, press Rescan, see it listed.
  await step("rescan", SHARED);
  await page.locator(byTest("tab-shares")).click();
  const folder = (await page.locator(byTest("shares-folders")).locator("li").first().textContent()).trim();
  const before = Number((await page.locator(byTest("shares-count")).textContent()).trim());
  writeFileSync(join(folder, SHARED), "a file bob shares after start\n");
  await page.locator(byTest("shares-rescan")).click();
  await page.locator(byTest("share-file")).filter({ hasText: SHARED }).waitFor({ timeout: T });
  const after = Number((await page.locator(byTest("shares-count")).textContent()).trim());
  if (after !== before + 1) throw new Error(`the share count went from ${before} to ${after}, not up by one`);
  fact("shares_status", JSON.stringify((await page.locator(byTest("shares-status")).textContent()).trim()));

  // Settings: change the download limit on the page; the node reports it in force, set
  // here over its file; Reset brings the file's value back.
  await step("settings");
  await page.locator(byTest("tab-settings")).click();
  const limit = page.locator(byTest("setting-max_download_kib"));
  await limit.waitFor({ timeout: T });
  await limit.fill("4321");
  await page.locator(byTest("settings-save")).click();
  await page.locator(byTest("setting-reset-max_download_kib")).waitFor({ timeout: T });
  const inForce = await page.evaluate(async () => {
    const t = localStorage.getItem("omnipeer.token");
    const r = await fetch("/api/settings", { headers: t ? { Authorization: `Bearer ${t}` } : {} });
    return (await r.json()).find((s) => s.key === "max_download_kib");
  });
  if (inForce.value !== 4321 || !inForce.overridden) throw new Error(`the node has ${JSON.stringify(inForce)}`);
  await page.locator(byTest("setting-reset-max_download_kib")).click();
  await page.locator(byTest("setting-reset-max_download_kib")).waitFor({ state: "detached", timeout: T });
  if ((await limit.inputValue()) !== String(inForce.config)) throw new Error(`after Reset the page shows ${await limit.inputValue()}`);

  if (consoleErrors.length) throw new Error(`the page logged errors: ${consoleErrors.join(" | ")}`);
  // The peer goes away (web_ui.rs stops node A on this line): the status shows it live.
  await step("outage");
  await page.locator(byTest("tab-status")).click();
  const nmdc = page.locator(`${byTest("network-row")}[data-network="nmdc_client"]`);
  await nmdc.and(page.locator(':not([data-state="online"])')).waitFor({ timeout: T });
  fact("nmdc_after_outage", (await nmdc.locator(byTest("network-state")).textContent()).trim());
  if ((await page.locator(byTest("events-state")).getAttribute("data-state")) !== "open") {
    throw new Error("the node's event stream dropped although only the peer went away");
  }

  // A download that cannot run now (its source is gone): pause, resume, cancel, retry.
  await step("controls", FILE2);
  await page.locator(byTest("tab-search")).click();
  // This time from a source of the user's choice: alice on Soulseek.
  const result2 = page.locator(`${byTest("search-result")}[data-name="${FILE2}"]`);
  await result2.locator(byTest("result-sources")).locator("summary").click();
  await result2.getByRole("button", { name: `Download ${FILE2} from ${PEER} on Soulseek` }).click();
  await result2.locator(byTest("download-button")).filter({ hasText: "Queued" }).waitFor({ timeout: T });
  await page.locator(byTest("tab-transfers")).click();
  const row2 = page.locator(`${byTest("transfer-row")}[data-name="${FILE2}"]`);
  await row2.waitFor({ timeout: T });
  const from2 = (await row2.locator(byTest("transfer-from")).textContent()).trim();
  if (from2 !== `${PEER} · Soulseek`) throw new Error(`the transfer is from ${from2}, not ${PEER} on Soulseek`);
  const stateIs = async (want) => {
    const ok = want.map((w) => `[data-state="${w}"]`).join(", ");
    await row2.and(page.locator(ok)).waitFor({ timeout: T });
    const shown = (await row2.locator(byTest("transfer-state")).textContent()).trim();
    if (!want.includes(shown)) throw new Error(`the state column says ${shown}, not ${want.join(" or ")}`);
  };
  await stateIs(["queued", "running"]);
  await row2.locator(byTest("transfer-pause")).click();
  await stateIs(["paused"]);
  await row2.locator(byTest("transfer-resume")).click();
  await stateIs(["queued", "running"]);
  await row2.locator(byTest("transfer-cancel")).click();
  await stateIs(["cancelled"]);
  if (await row2.locator(byTest("transfer-cancel")).count()) throw new Error("a cancelled transfer still offers cancel");
  await row2.locator(byTest("transfer-retry")).click();
  await stateIs(["queued", "running"]);
  fact("controls_note", JSON.stringify((await row2.locator(byTest("transfer-note")).textContent()).trim()));

  // The node itself restarts (web_ui.rs stops and starts node B on this line): the page
  // shows the stream down, reconnects by itself and re-reads what it shows.
  await page.evaluate(() => (window.__sameDocument = true));
  await step("restart");
  const live = page.locator(byTest("events-state"));
  await live.and(page.locator('[data-state="closed"]')).waitFor({ timeout: T });
  fact("while_down", JSON.stringify((await live.textContent()).trim()));
  await live.and(page.locator('[data-state="open"]')).waitFor({ timeout: T });
  if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error("the page was reloaded");
  await page.locator(byTest("tab-transfers")).click();
  await row.and(page.locator('[data-state="done"]')).waitFor({ timeout: T });
  await row2.waitFor({ timeout: T });
  await page.locator(byTest("tab-status")).click();
  // The restarted node reports its networks afresh (the peer is still away).
  await nmdc.and(page.locator(':not([data-state="online"])')).waitFor({ timeout: T });
  // Re-reading after the restart raised no error (the old run's searches are gone, not
  // "missing").
  await page.waitForTimeout(1000);
  const errors = await page.locator(`${byTest("toast")}.error`).allTextContents();
  if (errors.length) throw new Error(`after reconnecting the page shows errors: ${errors.join(" | ")}`);
  await page.locator(byTest("tab-search")).click();
  if (await page.locator(byTest("search-result")).count()) throw new Error("results of the node's previous run are still offered");

  if (SHOTS) {
    for (const v of ["status", "search", "transfers", "chat", "shares", "settings"]) {
      await page.locator(byTest(`tab-${v}`)).click();
      await page.waitForTimeout(300);
      await page.screenshot({ path: join(SHOTS, `view-${v}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 420, height: 860 });
    for (const v of ["transfers", "chat"]) {
      await page.locator(byTest(`tab-${v}`)).click();
      await page.waitForTimeout(300);
      await page.screenshot({ path: join(SHOTS, `narrow-${v}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  }
  await step("done");
  await context.close();
  process.exit(0);
} catch (e) {
  const shot = join(OUT, `failure-${stepName}.png`);
  try {
    await page.screenshot({ path: shot, fullPage: true });
    writeFileSync(join(OUT, `failure-${stepName}.html`), await page.content());
  } catch {
    // the page is gone: nothing to capture
  }
  console.log(`fail ${stepName}: ${e.message.split("\n")[0]}`);
  // What the node itself says (through the page, with its token), for the report.
  try {
    const said = await page.evaluate(async () => {
      const t = localStorage.getItem("omnipeer.token");
      const get = (p) => fetch(p, { headers: t ? { Authorization: `Bearer ${t}` } : {} }).then((r) => r.text());
      return { networks: await get("/api/networks"), transfers: await get("/api/transfers") };
    });
    console.log(`node networks ${said.networks}`);
    console.log(`node transfers ${said.transfers}`);
  } catch {
    // the node or the page is gone
  }
  console.log(`screenshot ${shot}`);
  if (consoleErrors.length) console.log(`console ${JSON.stringify(consoleErrors)}`);
  await context.close().catch(() => {});
  process.exit(1);
}
