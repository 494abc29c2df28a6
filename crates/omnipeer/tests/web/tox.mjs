// The Tox tab of a node's web UI in Debian's headless Chromium (playwright-core), as a
// user would: the node's Tox ID is shown and copied, a c-toxcore bot's friend request
// arrives, is accepted, the friend shows online (in the Tox tab and with a dot in the
// chat list), a line said to it is echoed back and marked delivered (✓), and another
// bot is added by its Tox ID through the form.
// Run by ../node_tox.rs, which starts the node and the bots and passes (environment):
//   OMNI_URL      the web UI (http://127.0.0.1:PORT/)
//   OMNI_TOXID    the node's Tox ID (what the page must show)
//   OMNI_REQUEST  the public key of the bot whose request to accept
//   OMNI_ADD      the Tox ID of a bot to add with the form
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS    (optional) a folder for a screenshot as each step begins
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";
import { T, friendOnline, openTox, say } from "./tox_harness.mjs";

const URL = env("OMNI_URL");
const TOXID = env("OMNI_TOXID");
const REQUEST = env("OMNI_REQUEST");
const ADD = env("OMNI_ADD");
const OUT = env("OMNI_OUT");

const { page, step, finish, fail } = await launch(OUT);

try {
  await step("open");
  await openTox(page, URL);

  await step("tox-id");
  const idEl = page.locator(byTest("tox-id"));
  await idEl.filter({ hasText: TOXID }).waitFor({ timeout: 30_000 });
  await page.locator(byTest("tox-copy")).click();
  await page.locator(byTest("toast")).filter({ hasText: /copied|Ctrl-C/ }).first().waitFor({ timeout: 5000 });

  await step("request");
  const req = page.locator(`${byTest("tox-request")}[data-pk="${REQUEST}"]`);
  await req.waitFor({ timeout: T });
  const badge = await page.locator(byTest("tox-badge")).textContent();
  if (badge.trim() !== "1") throw new Error(`the Tox tab's badge says ${JSON.stringify(badge)}, not 1`);
  await req.locator(byTest("tox-accept")).click();
  await req.waitFor({ state: "detached", timeout: 10_000 });

  await step("friend-online");
  const friend = await friendOnline(page, REQUEST);

  await step("chat");
  await friend.locator(byTest("tox-chat")).click();
  await page.locator(byTest("view-chat")).waitFor({ state: "visible", timeout: 5000 });
  const item = page.locator(`${byTest("chat-item")}[data-chat="tox:friend:${REQUEST}"]`);
  await item.locator(byTest("chat-online")).and(page.locator('[aria-label="online"]')).waitFor({ timeout: 10_000 });
  const text = "hello from the browser";
  await say(page, text);
  const log = page.locator(byTest("chat-log"));
  await log.locator(byTest("chat-text")).filter({ hasText: `echo: ${text}` }).waitFor({ timeout: T });
  const own = log.locator(`${byTest("chat-line")}[data-own="true"]`).filter({ hasText: text });
  await own.locator(byTest("chat-delivered")).waitFor({ timeout: T });

  await step("add-friend");
  await page.locator(byTest("tab-tox")).click();
  await page.locator(byTest("tox-add-id")).fill(ADD);
  await page.locator(byTest("tox-add-message")).fill("added from the browser");
  await page.locator(byTest("tox-add-submit")).click();
  const added = page.locator(`${byTest("tox-friend")}[data-pk="${ADD.slice(0, 64)}"]`);
  await added.waitFor({ timeout: 10_000 });
  await added.and(page.locator('[data-online="true"]')).waitFor({ timeout: T });

  await finish();
} catch (e) {
  await fail(e);
}
