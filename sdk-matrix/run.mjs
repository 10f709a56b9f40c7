// SDK matrix: sends events to a running Parcours node through the official Segment and
// RudderStack SDKs, server-side (Node) and in a real browser (headless Chromium, from a page on
// another origin), then checks through the admin API that each SDK's events are on the
// profile of the user it identified.
//
//   PARCOURS_URL=http://127.0.0.1:8750 PARCOURS_WRITE_KEY=... PARCOURS_ADMIN_TOKEN=... \
//     node sdk-matrix/run.mjs
//
// Environment:
//   PARCOURS_URL          tracking and admin base URL of the node (required)
//   PARCOURS_WRITE_KEY    a source's write key (required)
//   PARCOURS_ADMIN_TOKEN  an admin token of the same workspace (required)
//   CHROMIUM              the browser to drive (default /usr/bin/chromium)
//   SDK_MATRIX_ONLY       comma-separated subset of SDK names to run (default: all)
//   SDK_MATRIX_WAIT_MS    how long to wait for events to reach profiles (default 20000)
//
// No SDK may fetch anything from a vendor CDN: the browser pages load the SDKs from this
// package's node_modules (served by a small static server) and take their settings from
// Parcours; any request to another host is reported as a failure.
//
// Exits 0 when every SDK's events are on its profile; otherwise prints what went wrong
// for each failing SDK and exits 1.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`sdk-matrix: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const PARCOURS_URL = need('PARCOURS_URL').replace(/\/+$/, '');
const WRITE_KEY = need('PARCOURS_WRITE_KEY');
const ADMIN_TOKEN = need('PARCOURS_ADMIN_TOKEN');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = Number(process.env.SDK_MATRIX_WAIT_MS || 20000);
const ONLY = (process.env.SDK_MATRIX_ONLY || '').split(',').map((s) => s.trim()).filter(Boolean);

const parcours = new URL(PARCOURS_URL);
const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const withTimeout = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => { throw new Error(`${what} did not finish within ${ms} ms`); })]);

/** One entry per SDK: what it sent, what went wrong on the way, what the profile must show. */
const results = [];
function sdkResult(sdk, userId, expect) {
  const r = { sdk, userId, email: `${userId}@example.com`, expect, problems: [], notes: [] };
  results.push(r);
  return r;
}
const wanted = (sdk) => ONLY.length === 0 || ONLY.includes(sdk);

// ---------------------------------------------------------------- server-side SDKs

async function segmentNode() {
  const r = sdkResult('segment analytics-node', `node-seg-${RUN}`, ['identify', 'track']);
  const { Analytics } = require('@segment/analytics-node');
  const analytics = new Analytics({ writeKey: WRITE_KEY, host: PARCOURS_URL, path: '/v1/batch', maxRetries: 2 });
  analytics.on('error', (err) => r.problems.push(`error event: ${describe(err)}`));
  analytics.on('http_response', (res) => {
    const line = `POST ${PARCOURS_URL}/v1/batch -> ${res.status}`;
    r.notes.push(line);
    if (res.status >= 400) r.problems.push(line);
  });
  analytics.identify({ userId: r.userId, traits: { email: r.email, sdk: r.sdk } });
  analytics.track({ userId: r.userId, event: 'Order Completed', properties: { total: 42, currency: 'EUR' } });
  try {
    await analytics.closeAndFlush({ timeout: 20000 });
  } catch (err) {
    r.problems.push(`closeAndFlush: ${describe(err)}`);
  }
}

async function rudderNode() {
  const r = sdkResult('rudderstack rudder-sdk-node', `node-rs-${RUN}`, ['identify', 'track']);
  const RudderAnalytics = require('@rudderstack/rudder-sdk-node');
  const Analytics = RudderAnalytics.default || RudderAnalytics;
  // gzip is on by default in this SDK (Content-Encoding: gzip); it is stated here so that the
  // matrix keeps testing it even if the default changes.
  const client = new Analytics(WRITE_KEY, {
    dataPlaneUrl: PARCOURS_URL,
    gzip: true,
    flushAt: 20,
    flushInterval: 1000,
    logLevel: 'error',
    errorHandler: (err) => r.problems.push(`POST ${PARCOURS_URL}/v1/batch (gzip): ${describe(err)}`),
  });
  client.identify({ userId: r.userId, traits: { email: r.email, sdk: r.sdk } });
  client.track({ userId: r.userId, event: 'Order Completed', properties: { total: 42, currency: 'EUR' } });
  try {
    await withTimeout(client.flush(), 20000, 'flush');
    r.notes.push(`POST ${PARCOURS_URL}/v1/batch (gzip) flushed`);
  } catch (err) {
    r.problems.push(`flush: ${describe(err)}`);
  }
}

function describe(err) {
  if (!err) return String(err);
  const status = err.response?.status ?? err.status;
  const body = err.response?.data;
  let text = err.message || err.code || String(err);
  if (err.reason) text += ` (${describe(err.reason)})`;
  if (status) text += ` [HTTP ${status}]`;
  if (body && typeof body !== 'object') text += ` ${String(body).slice(0, 200)}`;
  else if (body) text += ` ${JSON.stringify(body).slice(0, 200)}`;
  return text;
}

// ---------------------------------------------------------------- browser SDKs

const SEGMENT_UMD = path.join(here, 'node_modules/@segment/analytics-next/dist/umd');
// The "bundled" build has every plugin compiled in, so it never loads plugins from a CDN.
const RUDDER_UMD = path.join(here, 'node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js');

function segmentPage(cfg) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>SDK matrix: Segment analytics-next</title></head>
<body><h1>Segment analytics-next</h1>
<script>window.__cfg = ${JSON.stringify(cfg)};</script>
<script src="./index.js"></script>
<script>
(function () {
  var cfg = window.__cfg;
  var api = new URL(cfg.parcours);
  window.__done = (async function () {
    var loaded = await window.AnalyticsNext.AnalyticsBrowser.load(
      { writeKey: cfg.writeKey, cdnURL: cfg.parcours },
      { integrations: { 'Segment.io': { apiHost: api.host + '/v1', protocol: api.protocol.replace(':', '') } } }
    );
    var analytics = loaded[0];
    var out = [];
    var note = function (ctx) {
      var failed = ctx.failedDelivery && ctx.failedDelivery();
      out.push({ type: ctx.event.type, failed: failed ? String(failed.reason && failed.reason.message || failed.reason) : null });
    };
    note(await analytics.identify(cfg.userId, { email: cfg.email, sdk: cfg.sdk }));
    note(await analytics.page('Catalog', 'Product', { path: '/products/sku-1' }));
    note(await analytics.track('Product Viewed', { sku: 'sku-1', price: 19.5 }));
    return out;
  })().catch(function (e) { return { error: String(e && e.stack || e) }; });
})();
</script></body></html>`;
}

function rudderPage(cfg) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>SDK matrix: RudderStack analytics-js</title></head>
<body><h1>RudderStack analytics-js</h1>
<script>window.__cfg = ${JSON.stringify(cfg)};</script>
<script src="./rsa.js"></script>
<script>
(function () {
  var cfg = window.__cfg;
  var RudderAnalytics = window.rudderanalytics.RudderAnalytics;
  var ra = new RudderAnalytics();
  window.__done = new Promise(function (resolve) {
    ra.load(cfg.writeKey, cfg.parcours, {
      configUrl: cfg.parcours,
      // Never used with a source that has no device-mode destinations and the bundled build;
      // pointed at the page's own server so that a regression shows as a 404 here, not as a
      // request to a vendor CDN.
      destSDKBaseURL: cfg.pageOrigin + '/rudderstack/integrations',
      pluginsSDKBaseURL: cfg.pageOrigin + '/rudderstack/plugins',
      logLevel: 'WARN',
      onLoaded: function () {},
    });
    var timer = setTimeout(function () { resolve({ error: 'the SDK never became ready (source config not loaded?)' }); }, 15000);
    ra.ready(function () {
      clearTimeout(timer);
      ra.identify(cfg.userId, { email: cfg.email, sdk: cfg.sdk });
      ra.page('Catalog', 'Product', { path: '/products/sku-1' });
      ra.track('Product Viewed', { sku: 'sku-1', price: 19.5 });
      resolve([{ type: 'identify' }, { type: 'page' }, { type: 'track' }]);
    });
  });
})();
</script></body></html>`;
}

function startStaticServer(pages) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (pages[url.pathname]) return send(200, 'text/html; charset=utf-8', pages[url.pathname]());
    if (url.pathname === '/rudderstack/rsa.js') return send(200, 'text/javascript', fs.readFileSync(RUDDER_UMD));
    const m = /^\/segment\/([A-Za-z0-9._-]+\.js)$/.exec(url.pathname);
    if (m && fs.existsSync(path.join(SEGMENT_UMD, m[1]))) {
      return send(200, 'text/javascript', fs.readFileSync(path.join(SEGMENT_UMD, m[1])));
    }
    if (url.pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
    send(404, 'text/plain', 'not found');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function browserSdks(which) {
  const { chromium } = require('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM} (set CHROMIUM)`);

  // The page must be on another origin than Parcours, as on a customer's site: another host
  // name for the same loopback address, and another port.
  const pageHost = parcours.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
  const cfgs = {};
  const server = await startStaticServer({
    '/segment/index.html': () => segmentPage(cfgs.segment),
    '/rudderstack/index.html': () => rudderPage(cfgs.rudder),
  });
  const pageOrigin = `http://${pageHost}:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // No name but the loopback ones resolves: a request to a vendor CDN fails at once (and is
    // reported below) instead of hanging.
    args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1', '--no-sandbox'],
  });
  try {
    const runs = [];
    if (which.includes('segment')) {
      const r = sdkResult('segment analytics-next (browser)', `browser-seg-${RUN}`, ['identify', 'page', 'track']);
      cfgs.segment = { parcours: PARCOURS_URL, writeKey: WRITE_KEY, userId: r.userId, email: r.email, sdk: r.sdk, pageOrigin };
      runs.push(drivePage(browser, r, `${pageOrigin}/segment/index.html`, {
        config: (u) => u.pathname === `/v1/projects/${WRITE_KEY}/settings`,
        events: { identify: (u) => u.pathname === '/v1/i', page: (u) => u.pathname === '/v1/p', track: (u) => u.pathname === '/v1/t' },
      }));
    }
    if (which.includes('rudder')) {
      const r = sdkResult('rudderstack analytics-js v3 (browser)', `browser-rs-${RUN}`, ['identify', 'page', 'track']);
      cfgs.rudder = { parcours: PARCOURS_URL, writeKey: WRITE_KEY, userId: r.userId, email: r.email, sdk: r.sdk, pageOrigin };
      runs.push(drivePage(browser, r, `${pageOrigin}/rudderstack/index.html`, {
        config: (u) => u.pathname.replace(/\/+$/, '') === '/sourceConfig',
        events: {
          identify: (u) => u.pathname === '/v1/identify',
          page: (u) => u.pathname === '/v1/page',
          track: (u) => u.pathname === '/v1/track',
        },
      }));
    }
    await Promise.all(runs);
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
}

/** Opens one page in its own context, runs its script, waits for the SDK's requests to Parcours. */
async function drivePage(browser, r, url, expect) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const pageOrigin = new URL(url).origin;
  const requests = []; // {method, url, status|error}
  const pending = new Set();
  const record = (req, outcome) => {
    pending.delete(req);
    requests.push({ method: req.method(), url: req.url(), ...outcome });
  };
  page.on('request', (req) => {
    pending.add(req);
    const u = new URL(req.url());
    if (u.origin !== pageOrigin && u.origin !== parcours.origin) {
      r.problems.push(`request to a host other than Parcours and the page: ${req.method()} ${req.url()}`);
      r.hard = true;
    }
  });
  page.on('requestfinished', async (req) => {
    const res = await req.response().catch(() => null);
    record(req, { status: res ? res.status() : 0 });
  });
  page.on('requestfailed', (req) => record(req, { error: req.failure()?.errorText || 'failed' }));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      const line = `console ${msg.type()}: ${msg.text()}`;
      if (msg.type() === 'error') r.problems.push(line);
      else r.notes.push(line);
    }
  });
  page.on('pageerror', (err) => r.problems.push(`page error: ${err.message}`));

  try {
    await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    const out = await withTimeout(page.evaluate(() => window.__done), 25000, 'the page script');
    let wait = 15000;
    if (out && out.error) {
      r.problems.push(`page script: ${out.error.split('\n').slice(0, 3).join(' | ')}`);
      wait = 1000; // nothing more is coming
    } else if (Array.isArray(out)) {
      for (const c of out) if (c.failed) r.problems.push(`${c.type}: delivery failed: ${c.failed}`);
    }
    // Wait until a request to Parcours for each event type has completed (or failed).
    const deadline = Date.now() + wait;
    const done = () =>
      Object.values(expect.events).every((match) =>
        requests.some((q) => new URL(q.url).origin === parcours.origin && match(new URL(q.url)) && q.method === 'POST'),
      );
    while (!done() && Date.now() < deadline) await sleep(200);
    await sleep(300); // let the last responses' events arrive
  } catch (err) {
    r.problems.push(`driving the page: ${err.message}`);
  } finally {
    for (const req of pending) requests.push({ method: req.method(), url: req.url(), error: 'still pending' });
    await context.close().catch(() => {});
  }

  // Report every request the page made to Parcours, and judge the ones that matter.
  const toParcours = requests.filter((q) => new URL(q.url).origin === parcours.origin);
  for (const q of requests) {
    const outcome = q.error ? `FAILED (${q.error})` : String(q.status);
    const line = `${q.method} ${q.url} -> ${outcome}`;
    if (q.error || q.status >= 400) r.problems.push(`request ${line}`);
    else r.notes.push(`request ${line}`);
  }
  if (!toParcours.some((q) => expect.config(new URL(q.url)))) {
    r.problems.push('the SDK never requested its settings document from Parcours');
  }
  for (const [type, match] of Object.entries(expect.events)) {
    if (!toParcours.some((q) => q.method === 'POST' && match(new URL(q.url)) && !q.error && q.status < 300)) {
      r.problems.push(`no successful ${type} request to Parcours`);
    }
  }
}

// ---------------------------------------------------------------- admin API checks

async function admin(pathAndQuery) {
  const res = await fetch(`${PARCOURS_URL}/api/v1${pathAndQuery}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

/** Polls the admin API until the user's profile holds every expected event type. */
async function checkProfile(r) {
  const deadline = Date.now() + WAIT_MS;
  let last = 'not looked up';
  for (;;) {
    const found = await admin(`/profiles/lookup?type=user_id&value=${encodeURIComponent(r.userId)}`).catch((e) => ({ status: 0, body: e.message }));
    if (found.status === 200 && found.body?.id) {
      const id = found.body.id;
      const ev = await admin(`/profiles/${encodeURIComponent(id)}/events?limit=100`).catch((e) => ({ status: 0, body: e.message }));
      if (ev.status === 200 && Array.isArray(ev.body?.events)) {
        const events = ev.body.events;
        const types = events.map((e) => e.type);
        const missing = r.expect.filter((t) => !types.includes(t));
        const email = found.body.traits?.email;
        if (missing.length === 0 && email === r.email) {
          return { ok: true, id, count: events.length };
        }
        last = `profile ${id} has ${events.length} events (${types.join(', ') || 'none'})` +
          (missing.length ? `, missing ${missing.join(', ')}` : '') +
          (email === r.email ? '' : `, trait email is ${JSON.stringify(email)} instead of ${r.email}`);
      } else {
        last = `GET /api/v1/profiles/${id}/events -> ${ev.status} ${short(ev.body)}`;
      }
    } else {
      last = `no profile holds user_id ${r.userId}: GET /api/v1/profiles/lookup?type=user_id&value=${r.userId} -> ${found.status} ${short(found.body)}`;
    }
    if (Date.now() >= deadline) return { ok: false, why: last };
    await sleep(500);
  }
}

const short = (b) => (typeof b === 'string' ? b : JSON.stringify(b)).slice(0, 300);

// ---------------------------------------------------------------- main

async function main() {
  console.log(`sdk-matrix run ${RUN} against ${PARCOURS_URL}`);
  const health = await fetch(`${PARCOURS_URL}/healthz`).catch((e) => ({ ok: false, status: e.message }));
  if (!health.ok) {
    console.error(`sdk-matrix: ${PARCOURS_URL}/healthz did not answer 200 (${health.status})`);
    process.exit(1);
  }

  const tasks = [];
  if (wanted('segment-node')) tasks.push(segmentNode());
  if (wanted('rudder-node')) tasks.push(rudderNode());
  const browserWhich = ['segment', 'rudder'].filter((s) => wanted(`${s}-browser`));
  if (browserWhich.length) {
    tasks.push(browserSdks(browserWhich).catch((err) => {
      const r = sdkResult('browser', '-', []);
      r.problems.push(`could not run the browser: ${err.message}`);
      r.fatal = true;
    }));
  }
  await Promise.all(tasks);

  let failed = 0;
  const verdicts = await Promise.all(results.map(async (r) => [r, r.fatal ? { ok: false, why: 'browser' } : await checkProfile(r)]));
  for (const [r, v] of verdicts) {
    if (v.ok && r.hard) {
      v.ok = false;
      v.why = `its events arrived, but it tried to load something from another host`;
    }
    if (v.ok) {
      console.log(`ok  ${r.sdk}: ${v.count} events on profile ${v.id}`);
      // Problems on the way do not count when the events arrived (e.g. a retried request);
      // they are still shown.
      for (const p of r.problems) console.log(`      (while sending) ${p}`);
    } else {
      failed++;
      console.log(`FAIL ${r.sdk} (user ${r.userId}): ${v.why}`);
      for (const p of r.problems) console.log(`      ${p}`);
      for (const n of r.notes) console.log(`      . ${n}`);
    }
  }
  const passed = results.length - failed;
  console.log(`sdk-matrix: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(`sdk-matrix: ${err.stack || err}`);
  process.exit(1);
});
