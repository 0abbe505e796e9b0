// Shared by the demo's browser tests (demo.test.mjs, csp.test.mjs): driving
// the demo page (web/demo) as a visitor does.

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
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
  const reply = page.locator('.message.assistant').nth(before);
  await reply.waitFor();
  const seen = [];
  while ((await reply.getAttribute('aria-busy')) === 'true') {
    const now = await reply.textContent();
    if (now && now !== seen[seen.length - 1]) seen.push(now);
    await page.waitForTimeout(50);
  }
  return { seen, final: await reply.textContent(), reply };
}
