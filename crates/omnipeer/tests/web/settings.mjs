// The Settings page of a node in its web UI (Debian's headless Chromium,
// playwright-core), as a user would: a new nick and a share folder that does not exist
// are saved together and refused (the reason beside the folder list, the nick kept);
// the bad folder is removed, a real one added, and Save puts both in force without a
// restart: the hub's user list shows the new nick and the Shares page lists the new
// folder's file.
// Run by ../node_settings.rs, which starts the nodes and passes (environment):
//   OMNI_URL      the web UI of the node under test (http://127.0.0.1:PORT/)
//   OMNI_OLD      its nick now
//   OMNI_NICK     the new nick to set
//   OMNI_FOLDER   a folder to share (exists, holds OMNI_FILE)
//   OMNI_FILE     the name of the file in it
//   OMNI_MISSING  a folder that does not exist
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS    (optional) a folder for a screenshot as each step begins
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";

const URL = env("OMNI_URL");
const OLD = env("OMNI_OLD");
const NICK = env("OMNI_NICK");
const FOLDER = env("OMNI_FOLDER");
const FILE = env("OMNI_FILE");
const MISSING = env("OMNI_MISSING");
const OUT = env("OMNI_OUT");
const T = 30_000;

const { page, step, finish, fail } = await launch(OUT, {
  // The refused Save is a 400 the page shows; the browser logs the failed request too.
  ignoreConsole: (text) => text.includes("400"),
});
const folderRow = (f) => `[data-testid="share-folder"][data-folder="${f}"]`;

try {
  await step("open");
  await page.goto(`${URL}#settings`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: T });
  await step("fields");
  const nick = page.locator(byTest("setting-nick"));
  await nick.waitFor({ timeout: T });
  if ((await nick.inputValue()) !== OLD) throw new Error(`the nick field shows ${await nick.inputValue()}`);
  await step("sections");
  // Sections the page has.
  for (const s of ["identity", "shares", "folders", "network", "passwords", "transfers"]) await page.locator(byTest(`settings-${s}`)).waitFor({ timeout: T });
  // A password is never shown.
  if ((await page.locator(byTest("setting-slsk_password")).inputValue()) !== "") throw new Error("a password field is filled in");

  await step("refused");
  await nick.fill(NICK);
  await page.locator(byTest("share-folder-input")).fill(MISSING);
  await page.locator(byTest("share-folder-add")).click();
  await page.locator(folderRow(MISSING)).waitFor({ timeout: T });
  await page.locator(byTest("settings-save")).click();
  const err = page.locator(byTest("setting-error-share_folders"));
  await err.waitFor({ state: "visible", timeout: T });
  const why = await err.textContent();
  if (!why.includes("does not exist")) throw new Error(`the folder's error reads ${JSON.stringify(why)}`);
  // Nothing changed: the node's nick is the old one.
  const inForce = await page.evaluate(async () => {
    const t = localStorage.getItem("omnipeer.token");
    const r = await fetch("/api/status", { headers: t ? { Authorization: `Bearer ${t}` } : {} });
    return (await r.json()).nick;
  });
  if (inForce !== OLD) throw new Error(`after a refused Save the node's nick is ${inForce}`);

  await step("save");
  await page.locator(`${folderRow(MISSING)} ${byTest("share-folder-remove")}`).click();
  await page.locator(folderRow(MISSING)).waitFor({ state: "detached", timeout: T });
  await page.locator(byTest("share-folder-input")).fill(FOLDER);
  await page.locator(byTest("share-folder-add")).click();
  await page.locator(folderRow(FOLDER)).waitFor({ timeout: T });
  if ((await nick.inputValue()) !== NICK) await nick.fill(NICK);
  await page.locator(byTest("settings-save")).click();
  await page.locator(byTest("setting-reset-nick")).waitFor({ timeout: T });
  await page.locator(byTest("setting-reset-share_folders")).waitFor({ timeout: T });
  await page.locator(byTest("settings-nick")).filter({ hasText: NICK }).waitFor({ timeout: T });
  await page.locator(folderRow(FOLDER)).waitFor({ timeout: T });

  await step("nick-on-hub");
  // The hub's user list (as this node sees it) has the new nick: the session logged in
  // again, the node did not restart.
  await page.locator(byTest("tab-chat")).click();
  await page.locator('[data-testid="chat-item"][data-chat="nmdc:hub"]').click();
  await page.locator(`[data-testid="chat-user"][data-nick="${NICK}"]`).waitFor({ timeout: T });

  await step("shared");
  await page.locator(byTest("tab-shares")).click();
  await page.locator(byTest("share-files")).filter({ hasText: FILE }).waitFor({ timeout: T });

  await finish();
} catch (e) {
  await fail(e);
}
