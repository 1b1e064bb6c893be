// The OpenFeature web providers in a real browser: @openfeature/flagd-web-provider (Connect,
// EventStream over HTTP/1.1) and @openfeature/ofrep-web-provider (OFREP, ETag polling), with
// @openfeature/web-sdk, bundled by esbuild into a page served from another origin than the
// daemon's, in headless Chromium driven by puppeteer-core, against a real flagpole.
//
// Usage: node run.js            (tests/browser/run installs the packages and calls this)
// Environment:
//   FLAGPOLE_BIN   the daemon (required)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   BROWSER_KEEP=1 keep the work dir (flag file, daemon log, screenshots) and print where it is
//
// Prints each scenario with what the page showed, then `browser: N passed, M failed, K skipped`;
// exits non-zero when any scenario failed.
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const esbuild = require('esbuild');
const puppeteer = require('puppeteer-core');

const FLAGPOLE_BIN = process.env.FLAGPOLE_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 15_000;
const HERE = __dirname;

// --- the flags the daemon serves ------------------------------------------------------------------

function flags({ greeting = 'hello' } = {}) {
  return {
    flags: {
      'browser-boolean': { state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'on' },
      'browser-string': {
        state: 'ENABLED',
        variants: { hello: 'hello from flagpole', changed: 'changed on the daemon' },
        defaultVariant: greeting,
      },
      'browser-number': { state: 'ENABLED', variants: { ten: 10, pi: 3.5 }, defaultVariant: 'ten' },
      'browser-object': {
        state: 'ENABLED',
        variants: { layout: { columns: 3, theme: 'dark' } },
        defaultVariant: 'layout',
      },
      'browser-targeted': {
        state: 'ENABLED',
        variants: { internal: 'internal', external: 'external' },
        defaultVariant: 'external',
        targeting: { if: [{ ends_with: [{ var: 'email' }, '@example.com'] }, 'internal', 'external'] },
      },
    },
  };
}

// --- processes and servers ------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, check, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${last.message})` : ''}`);
    await sleep(100);
  }
}

/** Serves the page and its bundle on 127.0.0.1:port (one origin per server). */
function servePage(port, bundle) {
  const html = fs.readFileSync(path.join(HERE, 'page', 'index.html'));
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://page');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
    } else if (url.pathname === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(bundle);
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

async function startDaemon(work, ports, allowedOrigin) {
  const log = fs.openSync(path.join(work, 'flagpole.log'), 'a');
  const daemon = spawn(
    FLAGPOLE_BIN,
    [
      'start',
      '--uri', `file:${path.join(work, 'flags.json')}`,
      '--port', String(ports.eval),
      '--ofrep-port', String(ports.ofrep),
      '--sync-port', String(ports.sync),
      '--management-port', String(ports.management),
      // Only the page's first origin: the second one must be refused.
      '--cors-origin', allowedOrigin,
    ],
    { stdio: ['ignore', log, log] },
  );
  await until('flagpole ready', async () => {
    if (daemon.exitCode !== null) throw new Error(`flagpole exited with ${daemon.exitCode}`);
    const res = await fetch(`http://127.0.0.1:${ports.management}/readyz`);
    return res.status === 200;
  });
  return daemon;
}

/** Writes the flag file and waits until the daemon answers with it (OFREP from Node: no Origin). */
async function serveFlags(work, ports, options) {
  const document = flags(options);
  fs.writeFileSync(path.join(work, 'flags.json'), JSON.stringify(document, null, 2));
  const want = document.flags['browser-string'].variants[document.flags['browser-string'].defaultVariant];
  await until(`daemon serving browser-string = ${want}`, async () => {
    const res = await fetch(`http://127.0.0.1:${ports.ofrep}/ofrep/v1/evaluate/flags/browser-string`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"context":{}}',
    });
    return res.status === 200 && (await res.json()).value === want;
  });
}

// --- the page -------------------------------------------------------------------------------------

/** What the page shows: its state block (JSON) and its visible text. */
async function shown(page) {
  const text = await page.$eval('#state', (el) => el.textContent);
  return JSON.parse(text);
}

async function visibleText(page) {
  return page.$eval('body', (el) => el.innerText.replace(/\n{2,}/g, '\n').trim());
}

async function pageUntil(page, what, check) {
  let last;
  try {
    return await until(what, async () => {
      last = await shown(page);
      return check(last);
    });
  } catch (error) {
    error.message += `\n  the page showed: ${JSON.stringify(last)}`;
    throw error;
  }
}

// --- scenarios ------------------------------------------------------------------------------------

async function main() {
  assert.ok(FLAGPOLE_BIN, 'FLAGPOLE_BIN is not set');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flagpole-browser-'));
  const [evalPort, ofrepPort, syncPort, managementPort, pagePort, otherPagePort] = await Promise.all(
    Array.from({ length: 6 }, freePort),
  );
  const ports = { eval: evalPort, ofrep: ofrepPort, sync: syncPort, management: managementPort };
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const otherOrigin = `http://127.0.0.1:${otherPagePort}`;

  const built = await esbuild.build({
    entryPoints: [path.join(HERE, 'page', 'app.js')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    write: false,
    logLevel: 'warning',
  });
  const bundle = built.outputFiles[0].text;
  console.log(`browser: page bundle ${bundle.length} bytes; page on ${pageOrigin} and ${otherOrigin}, flagpole on :${evalPort} (OFREP :${ofrepPort})`);

  fs.writeFileSync(path.join(work, 'flags.json'), JSON.stringify(flags(), null, 2));
  const servers = [await servePage(pagePort, bundle), await servePage(otherPagePort, bundle)];
  let daemon;
  let browser;
  const results = [];
  try {
    daemon = await startDaemon(work, ports, pageOrigin);
    const userDataDir = fs.mkdtempSync(path.join(work, 'chromium-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    console.log(`browser: ${await browser.version()}`);

    const flagdUrl = (origin, email) =>
      `${origin}/?provider=flagd&host=127.0.0.1&port=${evalPort}&email=${encodeURIComponent(email)}`;
    const ofrepUrl = (origin, email) =>
      `${origin}/?provider=ofrep&ofrep=${encodeURIComponent(`http://127.0.0.1:${ofrepPort}`)}&poll=500&email=${encodeURIComponent(email)}`;

    let flagsModified = false;

    /** Runs one scenario in a fresh page; the page's text is printed either way. */
    async function scenario(name, body) {
      const started = Date.now();
      const page = await browser.newPage();
      const consoleLines = [];
      const responses = [];
      page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
      page.on('requestfailed', (req) => consoleLines.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
      page.on('response', (res) =>
        responses.push({
          method: res.request().method(),
          url: res.url(),
          status: res.status(),
          headers: res.headers(),
          requestHeaders: res.request().headers(),
        }),
      );
      let status = 'passed';
      let detail = null;
      try {
        await body(page, { consoleLines, responses });
      } catch (error) {
        status = 'failed';
        detail = error.message;
      }
      if (flagsModified) {
        // The next scenario starts from the initial flags, whatever happened in this one.
        await serveFlags(work, ports, {});
        flagsModified = false;
      }
      let text = '';
      try {
        text = await visibleText(page);
        if (process.env.BROWSER_KEEP === '1') {
          await page.screenshot({ path: path.join(work, `${results.length + 1}.png`), fullPage: true });
        }
      } catch (error) {
        text = `(could not read the page: ${error.message})`;
      }
      await page.close();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`${status === 'passed' ? 'ok' : 'FAILED'} ${name} (${seconds}s)`);
      console.log(`  the page showed:\n${text.split('\n').filter((l) => !/^[\s{}[\]"]/.test(l) && l.length < 200).slice(0, 14).map((l) => `    | ${l}`).join('\n')}`);
      if (detail) {
        console.log(`  ${detail.split('\n').join('\n  ')}`);
        for (const line of consoleLines.slice(-8)) console.log(`  console ${line}`);
      }
      results.push({ name, status, detail });
    }

    const INITIAL = {
      'browser-boolean': { value: true, variant: 'on' },
      'browser-string': { value: 'hello from flagpole', variant: 'hello' },
      'browser-number': { value: 10, variant: 'ten' },
      'browser-object': { value: { columns: 3, theme: 'dark' }, variant: 'layout' },
    };

    function assertInitial(state) {
      for (const [key, want] of Object.entries(INITIAL)) {
        const got = state.flags[key];
        assert.deepEqual({ value: got.value, variant: got.variant }, want, `${key}: ${JSON.stringify(got)}`);
        assert.equal(got.reason, 'STATIC', `${key}: ${JSON.stringify(got)}`);
      }
    }

    async function targeting(page) {
      let state = await pageUntil(page, 'ready', (s) => s.status === 'ready' && s);
      assert.deepEqual(
        [state.flags['browser-targeted'].value, state.flags['browser-targeted'].reason],
        ['internal', 'TARGETING_MATCH'],
        'the page context email ends with @example.com',
      );
      // The page's user changes: the provider re-evaluates with the new context.
      await page.evaluate(() => window.setEmail('grace@elsewhere.org'));
      state = await pageUntil(page, 'the new context evaluated', (s) => s.flags['browser-targeted'].value === 'external' && s);
      assert.equal(state.flags['browser-targeted'].reason, 'TARGETING_MATCH');
      assert.ok(state.events.some((e) => e.type === 'context-changed'), 'a context-changed event');
    }

    // flagd-web: Connect over HTTP/1.1 from the browser.
    await scenario('flagd-web: initial values', async (page) => {
      await page.goto(flagdUrl(pageOrigin, 'ada@elsewhere.org'));
      const state = await pageUntil(page, 'ready', (s) => s.status === 'ready' && s);
      assertInitial(state);
      assert.equal(state.flags['browser-targeted'].value, 'external');
      assert.ok(state.events.some((e) => e.type === 'ready'), 'a ready event');
    });

    await scenario("flagd-web: targeting from the page's context", async (page) => {
      await page.goto(flagdUrl(pageOrigin, 'ada@example.com'));
      await targeting(page);
    });

    await scenario('flagd-web: a flag change on the daemon reaches the page (EventStream)', async (page, { responses }) => {
      await page.goto(flagdUrl(pageOrigin, 'ada@elsewhere.org'));
      await pageUntil(page, 'ready', (s) => s.status === 'ready');
      flagsModified = true;
      await serveFlags(work, ports, { greeting: 'changed' });
      const state = await pageUntil(
        page,
        'the change shown',
        (s) => s.flags['browser-string'].value === 'changed on the daemon' && s,
      );
      assert.ok(state.events.some((e) => e.type === 'changed'), 'a configuration-changed event');
      const stream = responses.find((r) => r.url.endsWith('/flagd.evaluation.v1.Service/EventStream'));
      assert.ok(stream, 'the page opened the EventStream');
      assert.equal(stream.headers['access-control-allow-origin'], pageOrigin);
    });

    // OFREP: bulk evaluation with ETag polling.
    await scenario('ofrep-web: initial values', async (page) => {
      await page.goto(ofrepUrl(pageOrigin, 'ada@elsewhere.org'));
      const state = await pageUntil(page, 'ready', (s) => s.status === 'ready' && s);
      assertInitial(state);
      assert.equal(state.flags['browser-targeted'].value, 'external');
    });

    await scenario("ofrep-web: targeting from the page's context", async (page) => {
      await page.goto(ofrepUrl(pageOrigin, 'ada@example.com'));
      await targeting(page);
    });

    await scenario('ofrep-web: an unchanged poll is answered 304 (ETag)', async (page, { responses }) => {
      await page.goto(ofrepUrl(pageOrigin, 'ada@elsewhere.org'));
      await pageUntil(page, 'ready', (s) => s.status === 'ready');
      const bulk = () => responses.filter((r) => r.method === 'POST' && r.url.includes('/ofrep/v1/evaluate/flags'));
      try {
        await until('a 304 among the polls', () => bulk().some((r) => r.status === 304), 5_000);
      } catch (error) {
        error.message += `; bulk responses: ${JSON.stringify(bulk().map((r) => [r.status, r.headers.etag ?? null, r.headers['access-control-expose-headers'] ?? null]))}`;
        throw error;
      }
      const first = bulk()[0];
      assert.equal(first.status, 200);
      assert.ok(first.headers.etag, 'the first answer carries an ETag');
      const notModified = bulk().find((r) => r.status === 304);
      assert.equal(notModified.requestHeaders['if-none-match'], first.headers.etag, 'the poll sent the ETag back');
      assert.equal(notModified.headers['access-control-allow-origin'], pageOrigin);
      const state = await shown(page);
      assertInitial(state);
      assert.ok(!state.events.some((e) => e.type === 'changed'), 'no change event for a 304');
    });

    await scenario('ofrep-web: a flag change on the daemon reaches the page (poll)', async (page) => {
      await page.goto(ofrepUrl(pageOrigin, 'ada@elsewhere.org'));
      await pageUntil(page, 'ready', (s) => s.status === 'ready');
      flagsModified = true;
      await serveFlags(work, ports, { greeting: 'changed' });
      const state = await pageUntil(
        page,
        'the change shown',
        (s) => s.flags['browser-string'].value === 'changed on the daemon' && s,
      );
      const changed = state.events.find((e) => e.type === 'changed');
      assert.ok(changed, 'a configuration-changed event');
      assert.deepEqual(changed.flagsChanged, ['browser-string']);
    });

    // --cors-origin names only the first page origin: the same page from another origin is refused.
    for (const [label, url] of [
      ['flagd-web', flagdUrl(otherOrigin, 'ada@example.com')],
      ['ofrep-web', ofrepUrl(otherOrigin, 'ada@example.com')],
    ]) {
      await scenario(`${label}: --cors-origin refuses another origin`, async (page, { consoleLines, responses }) => {
        await page.goto(url);
        const state = await pageUntil(page, 'the provider in error', (s) => s.status === 'error' && s);
        assert.equal(state.flags['browser-string'].value, 'code default');
        assert.equal(state.flags['browser-string'].reason, 'ERROR');
        await until('the browser reporting the CORS refusal', () =>
          consoleLines.some((l) => l.includes('blocked by CORS policy')),
        );
        const daemonAnswers = responses.filter((r) => !r.url.startsWith(otherOrigin));
        assert.ok(
          daemonAnswers.every((r) => r.headers['access-control-allow-origin'] === undefined),
          `the daemon allowed ${otherOrigin}: ${JSON.stringify(daemonAnswers)}`,
        );
      });
    }
  } finally {
    if (browser) await browser.close();
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await until('flagpole stopped', () => daemon.exitCode !== null || daemon.signalCode !== null, 5_000).catch(() =>
        daemon.kill('SIGKILL'),
      );
    }
    for (const server of servers) server.close();
    if (process.env.BROWSER_KEEP === '1') console.log(`browser: work dir kept at ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }

  const passed = results.filter((r) => r.status === 'passed').length;
  const failed = results.length - passed;
  console.log(`browser: ${passed} passed, ${failed} failed, 0 skipped`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((error) => {
  console.error(`browser: ${error.stack ?? error}`);
  console.log('browser: 0 passed, 1 failed, 0 skipped');
  process.exitCode = 1;
});
