// Chromium driven by playwright-core against warden: /ui (a page like a
// Gradio app, from llm_server.py) loaded through warden with HTTP Basic
// credentials, as a person would after the browser's login prompt; the page
// calls the model with fetch, EventSource and a websocket, all of which must
// carry the credentials the browser holds for the origin. A second context
// without credentials must get 401 for the page.
//
//   CHROMIUM  the browser binary (default /usr/bin/chromium, Debian's)
import { chromium } from 'playwright-core';
import { baseURL, emit, secret, step, user, versionOf } from './common.mjs';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
});

async function visit(httpCredentials) {
  const context = await browser.newContext(httpCredentials ? { httpCredentials } : {});
  const page = await context.newPage();
  // The answers the page got (its subresources and EventSource included),
  // with warden's error code when it answered itself.
  const seen = [];
  page.on('response', (resp) => {
    seen.push({ path: new URL(resp.url()).pathname, status: resp.status(), warden_error: resp.headers()['x-warden-error'] ?? null });
  });
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(new URL(ws.url()).pathname));
  try {
    const out = {};
    try {
      const resp = await page.goto(`${baseURL}/ui`, { timeout: 15_000 });
      out.status = resp.status();
    } catch (err) {
      // A 401 the browser has no credentials for ends the navigation with
      // net::ERR_INVALID_AUTH_CREDENTIALS; the answer is in seen.
      out.goto_error = String(err.message).split('\n')[0];
    }
    const page401 = seen.filter((r) => r.path === '/ui').at(-1);
    out.status = out.status ?? page401?.status ?? null;
    out.warden_error = page401?.warden_error ?? null;
    if (out.status === 200) {
      await page.waitForFunction(() => window.done === true, null, { timeout: 15_000 });
      out.results = await page.evaluate(() => window.results);
      out.dom = await page.textContent('#results');
    }
    out.seen = seen;
    out.websockets = sockets;
    return out;
  } finally {
    await context.close();
  }
}

const withCredentials = await step(() => visit({ username: user, password: secret }));
const withoutCredentials = await step(() => visit(null));
const version = browser.version();
await browser.close();
emit({ client: 'playwright', version: versionOf('playwright-core'), browser: version, with_credentials: withCredentials, without_credentials: withoutCredentials });
