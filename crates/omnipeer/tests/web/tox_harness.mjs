// What the Tox tab's browser tests share (tox.mjs, tox_conference.mjs, tox_group.mjs):
// opening the Tox tab with the event stream up, waiting for a friend to show online, and
// the conference and group cards, which work alike (create with a name, invite an online
// friend, open the chat with that friend among its users) under their own test ids.

import { byTest } from "./harness.mjs";

/** c-toxcore takes several seconds to connect. */
export const T = 90_000;

/** Opens the Tox tab of the web UI at `url` and waits for the event stream. */
export async function openTox(page, url) {
  await page.goto(`${url}#tox`, { waitUntil: "domcontentloaded" });
  await page.locator(byTest("events-state")).and(page.locator('[data-state="open"]')).waitFor({ timeout: 30_000 });
}

/** Waits until the friend with public key `pk` shows online in the Tox tab; returns it. */
export async function friendOnline(page, pk) {
  const friend = page.locator(`${byTest("tox-friend")}[data-pk="${pk}"]`);
  await friend.and(page.locator('[data-online="true"]')).waitFor({ timeout: T });
  return friend;
}

/** The test ids of the conference card and of the groups card. */
export const CONFERENCE = {
  name: "tox-conf-title",
  create: "tox-conf-create",
  item: "tox-conference",
  friend: "tox-conf-friend",
  invite: "tox-conf-invite-btn",
  chat: "tox-conf-chat",
};
export const GROUP = {
  name: "tox-group-name",
  create: "tox-group-create",
  item: "tox-group",
  friend: "tox-group-friend",
  invite: "tox-group-invite-btn",
  chat: "tox-group-chat",
};

/** Creates a chat of card `ids` (CONFERENCE or GROUP) named `name`; returns its item. */
export async function create(page, ids, name) {
  await page.locator(byTest(ids.name)).fill(name);
  await page.locator(byTest(ids.create)).click();
  const item = page.locator(byTest(ids.item)).filter({ hasText: name });
  await item.waitFor({ timeout: 10_000 });
  return item;
}

/** Invites the friend `pk` into `item` and waits until it is in, as `nick`. */
export async function invite(item, ids, pk, nick) {
  await item.locator(byTest(ids.friend)).selectOption(pk);
  await item.locator(byTest(ids.invite)).click();
  await item.filter({ hasText: `with ${nick}` }).waitFor({ timeout: T });
}

/** Opens `item`'s chat (Chat tab) and waits for `nick` among its users; returns the log. */
export async function openChat(page, item, ids, nick) {
  await item.locator(byTest(ids.chat)).click();
  await page.locator(byTest("view-chat")).waitFor({ state: "visible", timeout: 5000 });
  await page.locator(`${byTest("chat-user")}[data-nick="${nick}"]`).waitFor({ timeout: 30_000 });
  return page.locator(byTest("chat-log"));
}

/**
 * The steps the two cards share: "open" (the Tox tab, once `friendPk` is online),
 * "create" (a chat of card `ids` named `title`), "invite" (that friend, in as `nick`),
 * "chat" (its chat, with `nick` among the users). Returns the card's item and the chat log.
 */
export async function createInviteChat(page, step, ids, { url, friendPk, nick, title }) {
  await step("open");
  await openTox(page, url);
  await friendOnline(page, friendPk);
  await step("create");
  const item = await create(page, ids, title);
  await step("invite");
  await invite(item, ids, friendPk, nick);
  await step("chat");
  const log = await openChat(page, item, ids, nick);
  return { item, log };
}

/** Says `text` in the open chat. */
export async function say(page, text) {
  await page.locator(byTest("chat-input")).fill(text);
  await page.locator(byTest("chat-send")).click();
}
