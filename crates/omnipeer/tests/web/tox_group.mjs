// Tox NGC groups in a node's web UI in Debian's headless Chromium (playwright-core), as a
// user would: in the Tox tab a group is created with a name, an online c-toxcore 0.2.20
// friend is invited and shows up in it, its chat (Chat tab) lists the friend among the
// users, the friend's line arrives and a line is said there; then another friend's invite
// shows in the Groups card, Join opens its chat with that friend's line, and Leave
// removes the first group from the card.
// Run by ../tox_ngc_node.rs, which starts the node and the bots and passes:
//   OMNI_URL      the web UI (http://127.0.0.1:PORT/)
//   OMNI_FRIEND   the public key of the friend who joins (and says OMNI_LINE once in)
//   OMNI_NAME     that friend's name in the group
//   OMNI_LINE     that friend's line
//   OMNI_INVITER  the name of the friend whose group invites the node ("dave room")
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";
import { T, GROUP, createInviteChat, say } from "./tox_harness.mjs";

const URL = env("OMNI_URL");
const FRIEND = env("OMNI_FRIEND");
const NAME = env("OMNI_NAME");
const LINE = env("OMNI_LINE");
const INVITER = env("OMNI_INVITER");
const OUT = env("OMNI_OUT");

const { page, step, finish, fail } = await launch(OUT);

try {
  const chat = { url: URL, friendPk: FRIEND, nick: NAME, title: "browser group" };
  const { log } = await createInviteChat(page, step, GROUP, chat);
  await log.locator(byTest("chat-text")).filter({ hasText: LINE }).waitFor({ timeout: T });
  const text = "hello group from the browser";
  await say(page, text);
  await log.locator(byTest("chat-text")).filter({ hasText: text }).waitFor({ timeout: 10_000 });

  await step("accept");
  await page.goto(`${URL}#tox`, { waitUntil: "domcontentloaded" });
  const invite = page.locator(byTest("tox-group-invite")).filter({ hasText: `${INVITER} room` });
  await invite.waitFor({ timeout: T });
  await invite.locator(byTest("tox-group-accept")).click();
  await page.locator(byTest("view-chat")).waitFor({ state: "visible", timeout: 5000 });
  await page.locator(byTest("chat-log")).locator(byTest("chat-text")).filter({ hasText: `from ${INVITER}` }).waitFor({ timeout: T });

  await step("leave");
  await page.goto(`${URL}#tox`, { waitUntil: "domcontentloaded" });
  page.on("dialog", (d) => d.accept());
  const mine = page.locator(byTest("tox-group")).filter({ hasText: "browser group" });
  await mine.waitFor({ timeout: 10_000 });
  await mine.locator(byTest("tox-group-leave")).click();
  await mine.waitFor({ state: "detached", timeout: 10_000 });

  await finish();
} catch (e) {
  await fail(e);
}
