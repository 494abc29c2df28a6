// The hubs and servers of a node in its web UI (Debian's headless Chromium,
// playwright-core), as a user would: on the Status page a second hub is added with the
// form, its row comes online, its main chat is listed apart from the first hub's and a
// line said there is echoed back; its user list shows carol, who is made a buddy and
// sent to a private chat; then the hub is removed with its row's button.
// Run by ../node_sessions.rs, which starts the nodes and passes (environment):
//   OMNI_URL      the web UI of the node under test (http://127.0.0.1:PORT/)
//   OMNI_HUB      the second hub's address (dchub://127.0.0.1:PORT)
//   OMNI_SAY      the line to say in the second hub's main chat
//   OMNI_OUT      a folder for the browser profile and screenshots on failure
//   OMNI_SHOTS    (optional) a folder for a screenshot as each step begins
// Prints "step NAME" lines; exits 1 (after a screenshot) on the first thing that does
// not happen.

import { env, byTest, launch } from "./harness.mjs";

const URL = env("OMNI_URL");
const HUB = env("OMNI_HUB");
const SAY = env("OMNI_SAY");
const OUT = env("OMNI_OUT");
const T = 30_000;
const ROW = '[data-testid="network-row"][data-network="nmdc_client@hub2"]';
const CHAT = '[data-testid="chat-item"][data-chat="nmdc@hub2:hub"]';

const { page, step, finish, fail } = await launch(OUT);

try {
  await step("open");
  await page.goto(`${URL}#status`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: T });
  await page.locator('[data-testid="network-row"][data-network="nmdc_client"][data-state="online"]').waitFor({ timeout: T });

  await step("add-hub");
  await page.locator(byTest("session-network")).selectOption("nmdc");
  await page.locator(byTest("session-address")).fill(HUB);
  await page.locator(byTest("session-label")).fill("hub2");
  await page.locator(byTest("session-add-button")).click();
  await page.locator(`${ROW}[data-state="online"]`).waitFor({ timeout: T });
  const name = await page.locator(`${ROW} th`).textContent();
  if (!name.includes("hub2")) throw new Error(`the row is named ${JSON.stringify(name)}`);

  await step("hub2-chat");
  await page.locator(byTest("tab-chat")).click();
  await page.locator(CHAT).waitFor({ timeout: T });
  const first = page.locator('[data-testid="chat-item"][data-chat="nmdc:hub"]');
  await first.waitFor({ timeout: T });
  const label = await page.locator(CHAT).textContent();
  if (!label.includes("hub2")) throw new Error(`the second hub's chat is listed as ${JSON.stringify(label)}`);
  await page.locator(CHAT).click();
  await page.locator(byTest("chat-title")).filter({ hasText: "hub2" }).waitFor({ timeout: T });
  await page.locator(byTest("chat-input")).fill(SAY);
  await page.locator(byTest("chat-send")).click();
  await page.locator(byTest("chat-line")).filter({ hasText: SAY }).first().waitFor({ timeout: T });
  // The first hub's chat does not have it.
  await first.click();
  await page.locator(byTest("chat-title")).filter({ hasNotText: "hub2" }).waitFor({ timeout: T });
  if (await page.locator(byTest("chat-line")).filter({ hasText: SAY }).count()) throw new Error("the line shows in the first hub's chat");

  await step("users");
  // The second hub's user list: carol is there; mark her a buddy and open a private chat.
  await page.locator(CHAT).click();
  const carol = page.locator('[data-testid="chat-user"][data-nick="carol"]');
  await carol.waitFor({ timeout: T });
  await carol.locator(byTest("user-buddy")).click();
  await page.locator('[data-testid="chat-user"][data-nick="carol"].rel-buddy').waitFor({ timeout: T });
  await page.locator('[data-testid="chat-user"][data-nick="carol"]').locator(byTest("user-pm")).click();
  await page.locator(byTest("chat-title")).filter({ hasText: "carol" }).waitFor({ timeout: T });
  await page.locator('[data-testid="chat-item"][data-chat="nmdc@hub2:pm:carol"]').waitFor({ timeout: T });

  await step("remove-hub");
  await page.locator(byTest("tab-status")).click();
  await page.locator(`${ROW} ${byTest("session-remove")}`).click();
  await page.locator(ROW).waitFor({ state: "detached", timeout: T });
  await page.locator('[data-testid="network-row"][data-network="nmdc_client"][data-state="online"]').waitFor({ timeout: T });

  await finish();
} catch (e) {
  await fail(e);
}
