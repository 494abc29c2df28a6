// Tox conferences in a node's web UI in Debian's headless Chromium (playwright-core), as a
// user would: in the Tox tab a conference is created with a title, an online c-toxcore
// friend is invited and shows up in it, its chat (Chat tab) lists the friend among the
// users, and a line said there comes back as the friend's echo.
// Run by ../tox_conference_interop.rs, which starts the node and the bot and passes:
//   OMNI_URL      the web UI (http://127.0.0.1:PORT/)
//   OMNI_FRIEND   the public key of the friend (a bot that joins and echoes conference lines)
//   OMNI_NAME     the friend's name in the conference
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";
import { T, CONFERENCE, createInviteChat, say } from "./tox_harness.mjs";

const URL = env("OMNI_URL");
const FRIEND = env("OMNI_FRIEND");
const NAME = env("OMNI_NAME");
const OUT = env("OMNI_OUT");

const { page, step, finish, fail } = await launch(OUT);

try {
  const chat = { url: URL, friendPk: FRIEND, nick: NAME, title: "browser room" };
  const { log } = await createInviteChat(page, step, CONFERENCE, chat);
  const text = "hello conference from the browser";
  await say(page, text);
  await log.locator(byTest("chat-text")).filter({ hasText: `echo: ${text}` }).waitFor({ timeout: T });

  await finish();
} catch (e) {
  await fail(e);
}
