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

const URL = env("OMNI_URL");
const FRIEND = env("OMNI_FRIEND");
const NAME = env("OMNI_NAME");
const OUT = env("OMNI_OUT");
const T = 90_000; // c-toxcore takes several seconds to connect

const { page, step, finish, fail } = await launch(OUT);

try {
  await step("open");
  await page.goto(`${URL}#tox`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: 30_000 });
  const friend = page.locator(`${byTest("tox-friend")}[data-pk="${FRIEND}"]`);
  await friend.and(page.locator('[data-online="true"]')).waitFor({ timeout: T });

  await step("create");
  await page.locator(byTest("tox-conf-title")).fill("browser room");
  await page.locator(byTest("tox-conf-create")).click();
  const conf = page.locator(byTest("tox-conference")).filter({ hasText: "browser room" });
  await conf.waitFor({ timeout: 10_000 });

  await step("invite");
  await conf.locator(byTest("tox-conf-friend")).selectOption(FRIEND);
  await conf.locator(byTest("tox-conf-invite-btn")).click();
  await conf.filter({ hasText: `with ${NAME}` }).waitFor({ timeout: T });

  await step("chat");
  await conf.locator(byTest("tox-conf-chat")).click();
  await page.locator(byTest("view-chat")).waitFor({ state: "visible", timeout: 5000 });
  await page.locator(`${byTest("chat-user")}[data-nick="${NAME}"]`).waitFor({ timeout: 30_000 });
  const text = "hello conference from the browser";
  await page.locator(byTest("chat-input")).fill(text);
  await page.locator(byTest("chat-send")).click();
  const log = page.locator(byTest("chat-log"));
  await log.locator(byTest("chat-text")).filter({ hasText: `echo: ${text}` }).waitFor({ timeout: T });

  await finish();
} catch (e) {
  await fail(e);
}
