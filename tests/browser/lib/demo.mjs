// Shared by the demo's browser tests (demo.test.mjs, csp.test.mjs, webkit.test.mjs): driving
// the demo page (web/demo) as a visitor does.

/**
 * In the page (pass it to `page.evaluate` with the reply's index): records
 * every state reply `index` passes through while it streams, as it changes
 * (polling from outside misses states of a fast reply).
 */
export function watchReply(index) {
  const seen = (window.__replyStates = []);
  window.__replyObserver?.disconnect();
  window.__replyObserver = new MutationObserver(() => {
    const reply = document.querySelectorAll('.message.assistant')[index];
    const now = reply?.textContent;
    if (reply?.getAttribute('aria-busy') === 'true' && now && now !== seen[seen.length - 1]) seen.push(now);
  });
  window.__replyObserver.observe(document.body, { childList: true, subtree: true, characterData: true, attributes: true });
}

/** In the page: stops watchReply's recording and returns the states it saw. */
export function replyStates() {
  window.__replyObserver.disconnect();
  return window.__replyStates;
}

/** Waits until the demo has loaded a model or shows an error; true when loaded. */
export async function settled(page, timeout = 300_000) {
  await page.waitForFunction(() => document.body.dataset.ready || !document.getElementById('error').hidden, null, { timeout });
  return !(await page.locator('#error').isVisible());
}

/** Sets the chat's longest reply, in tokens. */
export async function setReplyLength(page, tokens) {
  if ((await page.locator('details.system').getAttribute('open')) === null) await page.locator('details.system summary').click();
  await page.fill('#chat-max-tokens', String(tokens));
}

/** Sends `text` and returns the texts the reply showed while streaming, and its final state. */
export async function chat(page, text) {
  const before = await page.locator('.message.assistant').count();
  await page.evaluate(watchReply, before);
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
  const reply = page.locator('.message.assistant').nth(before);
  await reply.waitFor();
  await page.waitForFunction((index) => document.querySelectorAll('.message.assistant')[index].getAttribute('aria-busy') !== 'true', before, { timeout: 0 });
  const seen = await page.evaluate(replyStates);
  return { seen, final: await reply.textContent(), reply };
}
