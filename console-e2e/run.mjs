// Drives the Parcours console in headless Chromium against a node holding the demo data (see
// scripts/console-e2e.sh, which starts it): sign in, find the demo's omnichannel customer by
// email, see her shop purchase and her web cart on one timeline, unmerge and see both
// profiles, switch to French, export a customer's data and erase another, set retention, a
// read-only token opens no customer (personal data) nor privacy request and sees no edit
// control, a forged post is refused. Every page is checked with axe-core (no serious or critical violation) and loads
// nothing from another origin. Screenshots go to SCREENSHOTS (default ./screenshots).
//
// Environment:
//   PARCOURS_URL      the node, e.g. http://127.0.0.1:8750
//   ADMIN_TOKEN       an admin token of the demo workspace
//   READ_ONLY_TOKEN   a read-only token of the same workspace
//   CUSTOMER_EMAIL    the omnichannel customer's email (from the demo's banner)
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   SCREENSHOTS       where screenshots are written

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = need('PARCOURS_URL').replace(/\/$/, '');
const ADMIN = need('ADMIN_TOKEN');
const READ_ONLY = need('READ_ONLY_TOKEN');
const EMAIL = need('CUSTOMER_EMAIL');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOTS || path.join(path.dirname(new URL(import.meta.url).pathname), 'screenshots');
fs.mkdirSync(SHOTS, { recursive: true });

let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
};

const foreign = [];
async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
  const page = await context.newPage();
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url());
  });
  page.on('pageerror', (e) => { console.log(`page error: ${e.message}`); failures += 1; });
  return { context, page };
}

// axe-core, evaluated in the page through the DevTools protocol (the console's CSP lets no
// injected script tag run): serious and critical violations fail the run.
async function accessible(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of result) console.log(`     axe ${name}: ${v.impact} ${v.id} (${v.nodes}): ${v.help}`);
  check(bad.length === 0, `${name}: no serious or critical accessibility violation`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

async function signIn(page, token) {
  await page.goto(`${BASE}/console`);
  await page.waitForURL(/\/console\/sign-in/);
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/console\/dashboard$/);
}

// Older pages of the timeline are loaded in place (htmx) until `done` holds or none is left.
async function timelineUntil(page, done, pages = 40) {
  for (let i = 0; i < pages; i += 1) {
    if (await done()) return true;
    const older = page.locator('tr.older a');
    if ((await older.count()) === 0) return done();
    const rows = await page.locator('tr.event').count();
    await older.click();
    await page.waitForFunction((n) => document.querySelectorAll('tr.event').length > n, rows);
  }
  return done();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // No name but the loopback ones resolves: a request elsewhere fails at once and is reported.
  args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1', '--no-sandbox',
    '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // --- an admin
  const { context, page } = await newPage(browser);
  await page.goto(`${BASE}/console`);
  await page.waitForURL(/\/console\/sign-in/);
  await shot(page, 'sign-in');
  await accessible(page, 'sign-in');
  await page.getByLabel('Token').fill('pat_not_a_token_0123456789');
  await page.getByRole('button', { name: 'Sign in' }).click();
  check(await page.getByRole('alert').innerText().then((t) => t.includes('not valid')), 'a wrong token is refused with a message');
  await signIn(page, ADMIN);
  check(true, 'signed in, on the dashboard');

  // The dashboard: the demo's activity per day, drawn and in tables.
  await page.waitForSelector('#chart-events[data-drawn="true"] svg');
  const eventsTotal = Number((await page.locator('#total-events').innerText()).replace(/[^0-9]/g, ''));
  check(eventsTotal > 1000, `the dashboard counts the demo's events (${eventsTotal})`);
  const drawn = await page.locator('.chart[data-drawn="true"] svg').count();
  check(drawn === 4, `its four charts are drawn (${drawn})`);
  const channelColumns = await page.locator('#table-events thead th').count();
  check(channelColumns >= 6, `events per channel cover the demo's channels (${channelColumns - 1})`);
  await shot(page, 'dashboard');
  await accessible(page, 'dashboard');
  await page.getByRole('link', { name: 'Last 7 days' }).click();
  await page.waitForURL(/from=/);
  check((await page.locator('#table-events tbody tr').count()) === 7, 'the last 7 days show 7 days');
  await page.getByLabel('From').fill('2026-11-20');
  await page.getByLabel('To').fill('2026-11-10');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/from=2026-11-20/);
  check((await page.getByRole('alert').innerText()).includes('after it ends'), 'a range that ends before it starts is refused with its reason');

  // Measurement: the demo's KPIs, sales per attribution model, the purchase funnel.
  await page.getByRole('link', { name: 'Measurement' }).click();
  await page.waitForURL(/\/console\/measure/);
  await page.waitForSelector('#chart-funnel[data-drawn="true"] svg');
  const measured = await page.locator('#measure .chart[data-drawn="true"] svg').count();
  check(measured === 3, `the Measurement page draws its three charts (${measured})`);
  const orders = Number((await page.locator('#kpi-orders').innerText()).replace(/[^0-9]/g, ''));
  check(orders > 0, `it counts the demo's orders (${orders})`);
  const kpiRows = await page.locator('#table-kpis tbody tr').count();
  check(kpiRows >= 4, `KPIs per channel (${kpiRows} channels)`);
  check((await page.locator('#table-funnel tbody tr').count()) === 4, 'the funnel has its four steps');
  const upliftJourneys = await page.locator('#table-uplift-groups tbody tr', { hasText: 'treated' }).count();
  check(upliftJourneys >= 3, `each journey that ran shows its treated group (${upliftJourneys})`);
  await shot(page, 'measure');
  await accessible(page, 'measure');
  await page.getByLabel('Break down by').selectOption('shop');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/by=shop/);
  const shops = await page.locator('#table-kpis tbody th').allInnerTexts();
  check(shops.some((s) => s.startsWith('store_')) && shops.includes('(none)'), `broken down by shop: ${shops.join(', ')}`);

  await page.goto(`${BASE}/console/customers`);
  await shot(page, 'customers');
  await accessible(page, 'customers');

  await page.getByLabel(/Email, phone/).fill(EMAIL.toUpperCase());
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/\/console\/customers\/p_/);
  const customerUrl = page.url();
  check(true, `found ${EMAIL} (typed in capitals) at ${customerUrl}`);
  const both = await timelineUntil(page, async () => {
    const store = await page.locator('tr.event:has([data-channel="store"]) td.what', { hasText: 'Order Completed' }).count();
    const cart = await page.locator('tr.event:has([data-channel="web"]) td.what', { hasText: 'Product Added' }).count();
    return store > 0 && cart > 0;
  });
  check(both, 'her shop purchase and her web cart are on one timeline');
  await page.goto(customerUrl);
  await shot(page, 'customer');
  await accessible(page, 'customer');

  // Every journey decision about her, with its reason.
  await page.getByRole('link', { name: 'every decision' }).click();
  await page.waitForURL(/\/journeys$/);
  await accessible(page, 'her journey decisions');
  await page.goto(customerUrl);

  // Why she is in the audience of web carts and shop purchases, condition by condition.
  await page.getByRole('link', { name: /online_cart_store_purchase/ }).filter({ hasText: 'why' }).click();
  await page.waitForURL(/\/explain\//);
  const verdict = await page.locator('#verdict').innerText();
  check(verdict.includes('matches the definition now') && verdict.includes('she is a member'), `explained: ${verdict}`);
  check(await page.locator('tbody tr').count() >= 3, 'condition by condition');
  await accessible(page, 'explain');
  await page.goto(customerUrl);

  // Filtered to the shop: only shop events.
  await page.getByLabel('Channel').selectOption('store');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/channel=store/);
  const channels = await page.locator('tr.event [data-channel]').evaluateAll((els) => els.map((e) => e.dataset.channel));
  check(channels.length > 0 && channels.every((c) => c === 'store'), `the shop filter shows only shop events (${channels.length})`);

  // French: the same page, translated, remembered.
  await page.getByRole('link', { name: 'Français' }).click();
  await page.waitForURL(/\/console\/customers\/p_/);
  check(await page.locator('html').getAttribute('lang') === 'fr', 'the page is in French');
  check((await page.locator('#h-timeline').innerText()) === 'Chronologie', 'its headings are translated');
  await shot(page, 'customer-fr');
  await accessible(page, 'customer (French)');
  await page.goto(customerUrl);
  check((await page.locator('#h-timeline').innerText()) === 'Chronologie', 'French is remembered');
  await page.goto(`${BASE}/console/dashboard`);
  await page.waitForSelector('#chart-events[data-drawn="true"] svg');
  check((await page.locator('h1').innerText()) === 'Tableau de bord', 'the dashboard is in French, charts drawn');
  await shot(page, 'dashboard-fr');
  await page.goto(customerUrl);
  await page.getByRole('link', { name: 'English' }).click();
  await page.waitForURL(/\/console\/customers\/p_/);

  // Unmerge one of her merges: what it will do first, then both profiles.
  const unmerge = page.getByRole('link', { name: 'Unmerge' }).first();
  check((await unmerge.count()) > 0, 'an admin sees an unmerge action on her merges');
  if ((await unmerge.count()) > 0) {
    await unmerge.click();
    await page.waitForURL(/\/unmerge\//);
    await shot(page, 'unmerge');
    await accessible(page, 'unmerge');
    await page.getByRole('button', { name: 'Unmerge now' }).click();
    await page.waitForURL(/unmerged=p_/);
    check(await page.getByRole('status').innerText().then((t) => t.includes('the two profiles')), 'the unmerge is done and says so');
    const links = await page.getByRole('status').locator('a').evaluateAll((as) => as.map((a) => a.href));
    check(links.length === 2 && links[0] !== links[1], 'both profiles are linked');
    for (const href of links) {
      const r = await page.goto(href);
      check(r.status() === 200, `profile ${href.split('/').pop()} opens`);
    }
  }

  // Audiences: a definition with a syntax error is pointed at as it is typed and refused on
  // saving; fixed, it is saved, computed, and its size shown.
  await page.getByRole('link', { name: 'Audiences' }).click();
  await page.waitForURL(/\/console\/audiences$/);
  const sparks = await page.locator('svg.spark').count();
  check(sparks > 0 && sparks === (await page.locator('table tbody tr').count()), `each audience has its 30-day line (${sparks})`);
  await shot(page, 'audiences');
  await accessible(page, 'audiences');
  await page.getByLabel('Id', { exact: true }).fill('e2e_shop_buyers');
  await page.getByLabel('Name', { exact: true }).fill('Bought in a shop');
  await page.getByLabel('Definition').fill('did "Order Completed" on store within 365 dayz');
  const live = page.locator('#a-check .error');
  await live.waitFor();
  const liveText = await live.innerText();
  check(/Line 1, column \d+/.test(liveText), `the mistake is pointed at as it is typed: ${liveText}`);
  check(await page.locator('#a-check mark').count() === 1, 'the place is marked');
  await page.getByRole('button', { name: 'Save and compute' }).click();
  await page.waitForSelector('#save-error');
  check(await page.locator('#a-definition').inputValue() === 'did "Order Completed" on store within 365 dayz', 'the refused text is kept');
  await shot(page, 'audience-error');
  await page.getByLabel('Definition').fill('did "Order Completed" on store within 365 days');
  await page.locator('#a-check .ok').waitFor();
  await page.getByRole('button', { name: 'Estimate its size' }).click();
  await page.locator('#a-estimate.ok').waitFor();
  const estimate = await page.locator('#a-estimate').innerText();
  check(/It would hold (about )?[0-9]/.test(estimate), `its size is estimated before saving: ${estimate}`);
  await page.getByRole('button', { name: 'Save and compute' }).click();
  await page.waitForURL(/\/console\/audiences\/e2e_shop_buyers$/);
  await page.locator('#a-size .size').waitFor({ timeout: 60000 });
  const size = Number((await page.locator('#a-size .size').innerText()).replace(/[^0-9]/g, ''));
  check(size > 0, `the new audience's size is shown once computed: ${size}`);
  await page.locator('a[href^="/console/customers/p_"]').first().waitFor({ timeout: 30000 });
  check(await page.locator('a[href^="/console/customers/p_"]').count() > 0, 'its members are listed');
  const csv = await page.request.get(`${BASE}/console/audiences/e2e_shop_buyers/export?format=csv`);
  check(csv.status() === 200 && (await csv.text()).split('\n').length - 2 === size,
    `its members download as a file, one row each (${size})`);
  await shot(page, 'audience');
  await accessible(page, 'audience');

  // Journeys: the list with live counts, and one journey's graph.
  await page.getByRole('link', { name: 'Journeys' }).click();
  await page.waitForURL(/\/console\/journeys$/);
  await shot(page, 'journeys');
  await accessible(page, 'journeys');
  await page.getByRole('link', { name: 'Abandoned cart' }).click();
  await page.waitForURL(/\/console\/journeys\/abandoned-cart$/);
  const steps = await page.locator('#journey-graph g.node[data-step]').count();
  check(steps >= 3, `the journey's graph shows its steps (${steps})`);
  check(await page.locator('#journey-graph .edge').count() >= steps, 'and the ways between them');
  await shot(page, 'journey');
  await accessible(page, 'journey');
  // Simulated over the last month of the demo's history.
  await page.getByRole('link', { name: 'Simulate' }).click();
  await page.waitForURL(/\/simulate$/);
  await page.getByRole('button', { name: 'Simulate' }).click();
  await page.locator('#sim-entered').waitFor({ timeout: 60000 });
  const entered = Number((await page.locator('#sim-entered').innerText()).split(' ')[0].replace(/[^0-9]/g, ''));
  check(entered > 0, `the simulation enters the month's carts: ${entered}`);
  await shot(page, 'journey-simulation');
  await accessible(page, 'journey simulation');
  await page.goBack();
  await page.goBack();
  await page.waitForURL(/\/console\/journeys\/abandoned-cart$/);
  // Its document in the editor: a mistake typed is pointed at, line and column.
  await page.getByRole('link', { name: 'Edit the document' }).click();
  await page.waitForURL(/\/edit$/);
  const doc = await page.locator('#j-doc').inputValue();
  await page.locator('#j-doc').fill(doc.replace('wait: 1h', 'wait: soon'));
  await page.locator('#j-problems').waitFor();
  const problem = await page.locator('#j-problems').innerText();
  check(/Line \d+, column \d+/.test(problem), `the editor points at the mistake: ${problem}`);
  await shot(page, 'journey-editor');
  await accessible(page, 'journey editor');

  // Messages: a captured email, as the customer would see it.
  await page.getByRole('link', { name: 'Messages' }).click();
  await page.waitForURL(/\/console\/messages/);
  await shot(page, 'messages');
  await accessible(page, 'messages');
  // The welcome email of the customer the script signed up (the journey sends it within
  // moments: the page is read again until it is there).
  const first = page.locator('tbody tr', { hasText: 'lea.e2e@example.com' }).locator('td:first-child a').first();
  for (let i = 0; i < 30 && (await first.count()) === 0; i += 1) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  check(await first.count() === 1, 'captured emails are listed');
  await first.click();
  await page.waitForURL(/\/console\/messages\/[^/]+$/);
  const frame = page.frameLocator('iframe.email');
  const body = await frame.locator('body').innerText();
  check(body.trim().length > 20, `the email is shown in its frame: ${body.trim().slice(0, 60)}…`);
  check(await page.locator('iframe.email').getAttribute('sandbox') === '', 'in a sandbox (no script, no navigation)');
  check((await page.locator('#h-receipts').count()) === 1, 'what became of it has its place (receipts)');
  await shot(page, 'message');
  await accessible(page, 'message');

  // Data quality: the lags and the quarantine.
  await page.getByRole('link', { name: 'Data quality' }).click();
  await page.waitForURL(/\/console\/quality$/);
  check(await page.locator('#unify-lag').count() === 1, 'data quality shows how far behind profiles are');
  await shot(page, 'quality');
  await accessible(page, 'quality');
  const arrived = await page.locator('#table-sources tbody tr').count();
  check(arrived > 0, `what arrives is shown per source (${arrived} sources)`);

  // Settings: sources with what to paste, tokens with their roles.
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.waitForURL(/\/console\/settings$/);
  check(await page.locator('#h-tokens').count() === 1, 'an admin sees the tokens');
  await shot(page, 'settings');
  await accessible(page, 'settings');
  // A test message on a channel with no provider: kept, and the page says nothing left.
  await page.locator('#test-channel').selectOption('sms');
  await page.getByLabel(/^Send to/).fill('+33 6 12 34 56 78');
  await page.getByRole('button', { name: 'Send a test' }).click();
  await page.waitForSelector('#test-result');
  check((await page.locator('#test-result').innerText()).includes('+33612345678'), 'a test message is sent through a channel, and what became of it is said');
  // The identity rules in force, previewed: they make what they make today.
  await page.getByRole('button', { name: 'Preview the effect' }).click();
  await page.waitForSelector('#rules-preview');
  const now = await page.locator('#preview-profiles-now').innerText();
  const withRules = await page.locator('#preview-profiles-with').innerText();
  check(now === withRules && Number(now.replace(/[^0-9]/g, '')) > 0, `the rules in force, previewed, make the same profiles (${now})`);
  await page.locator('#rules-preview').scrollIntoViewIfNeeded();
  await shot(page, 'settings-preview');
  await accessible(page, 'settings (preview)');

  // Commerce: stock per location, the demo's click & collect order, its member's ledger.
  await page.getByRole('link', { name: 'Commerce' }).first().click();
  await page.waitForURL(/\/console\/commerce$/);
  check(await page.locator('#table-stock tbody tr').count() > 5, 'the first location\'s stock is listed');
  await page.getByRole('link', { name: /Lyon Part-Dieu/ }).click();
  await page.waitForURL(/location=store_2/);
  const lyonRows = await page.locator('#table-stock tbody tr').count();
  check(lyonRows > 5, `Lyon Part-Dieu's stock is listed (${lyonRows} SKUs)`);
  await shot(page, 'commerce-stock');
  await accessible(page, 'commerce (stock)');
  const offerRows = await page.locator('#table-offers tbody tr').count();
  check(offerRows === 4, `the brand's offers are listed (${offerRows})`);
  await page.locator('#table-offers').scrollIntoViewIfNeeded();
  await shot(page, 'commerce-offers');
  await page.getByLabel('Order number').fill('W-DEMO-1');
  await page.getByRole('button', { name: 'Open' }).first().click();
  await page.waitForURL(/\/console\/commerce\/orders\/W-DEMO-1$/);
  check((await page.locator('#order-status').innerText()).includes('ready_for_pickup'), 'the demo\'s click & collect order waits at the shop');
  check(await page.locator('#table-allocation tbody tr').count() === 1, 'its unit is held at one location');
  check((await page.locator('#table-applied').innerText()).includes('BIENVENUE10'), 'the welcome code priced it');
  await shot(page, 'commerce-order');
  await accessible(page, 'commerce (order)');
  await page.locator('dd a[href^="/console/commerce/loyalty/"]').click();
  await page.waitForURL(/\/console\/commerce\/loyalty\//);
  const pending = Number((await page.locator('#pts_pending').innerText()).replace(/[^0-9]/g, ''));
  check(pending > 0, `the member's till purchase earned pending points (${pending})`);
  check(await page.locator('#table-ledger tbody tr').count() >= 1, 'her ledger lists the earn');
  await shot(page, 'commerce-member');
  await accessible(page, 'commerce (member)');

  // Privacy: her data exported from her page and the archive downloaded; the customer the
  // script signed up erased after a confirmation; retention set; every step in the audit log.
  await page.goto(customerUrl);
  await page.getByRole('button', { name: 'Export her data' }).click();
  await page.waitForURL(/\/console\/privacy\?filed=pr_/);
  const filed = new URL(page.url()).searchParams.get('filed');
  await shot(page, 'privacy');
  await accessible(page, 'privacy');
  const archiveLink = page.locator(`tr[data-request="${filed}"] a[download]`);
  for (let i = 0; i < 60 && (await archiveLink.count()) === 0; i += 1) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  check(await archiveLink.count() === 1, 'her access request is answered with an archive');
  const zip = await page.request.get(`${BASE}/console/privacy/requests/${filed}/archive`);
  const zipBytes = await zip.body();
  check(zip.status() === 200 && zipBytes.subarray(0, 2).toString() === 'PK' && zipBytes.includes(EMAIL.toLowerCase())
    && zipBytes.includes('events.json'), `the archive is a zip of her data (${zipBytes.length} bytes)`);
  // Her page lists her requests, the archive with them.
  await page.goto(customerUrl);
  check(await page.locator(`tr[data-request="${filed}"] a[download]`).count() === 1,
    'her page lists her access request with its archive');
  await accessible(page, 'customer (her requests)');
  // Erasure: what it will do first; refused without the box ticked (the browser asks), then done.
  await page.goto(`${BASE}/console/customers`);
  await page.getByLabel(/Email, phone/).fill('lea.e2e@example.com');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/\/console\/customers\/p_/);
  const leaUrl = page.url();
  await page.getByRole('link', { name: 'Erase her data…' }).click();
  await page.waitForURL(/\/erase$/);
  await shot(page, 'erase');
  await accessible(page, 'erase');
  await page.getByLabel('I understand that this cannot be undone').check();
  await page.getByRole('button', { name: 'Erase now' }).click();
  await page.waitForURL(/\/console\/privacy\?filed=pr_/);
  const erasure = new URL(page.url()).searchParams.get('filed');
  const erasureState = page.locator(`tr[data-request="${erasure}"] .state`);
  for (let i = 0; i < 60 && (await erasureState.innerText()) !== 'done'; i += 1) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  check(await erasureState.innerText() === 'done', 'the erasure is done');
  const gone = await page.goto(leaUrl);
  check(gone.status() === 404, `her page is gone (${gone.status()})`);
  await page.goto(`${BASE}/console/privacy`);
  // Retention: a value out of range is refused and said; a good one is saved and shown.
  await page.getByLabel('Events (days)', { exact: true }).fill('0');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('#settings-error').waitFor();
  check((await page.locator('#settings-error').innerText()).includes('1 to 36500'), 'a retention of 0 days is refused, with the reason');
  await page.getByLabel('Events (days)', { exact: true }).fill('730');
  await page.getByLabel('IP addresses').selectOption('drop');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.waitForURL(/saved=1/);
  check(await page.getByLabel('Events (days)', { exact: true }).inputValue() === '730'
    && await page.getByLabel('IP addresses').inputValue() === 'drop', 'the retention and the IP setting are saved');
  check((await page.locator('#table-audit tbody tr').first().innerText()).includes('privacy.settings.changed'),
    'the audit log shows the newest first');
  await page.locator('#h-audit').scrollIntoViewIfNeeded();
  await shot(page, 'privacy-audit');
  const audit = await page.request.get(`${BASE}/console/privacy/audit.csv`);
  const auditCsv = await audit.text();
  for (const action of ['privacy.access.done', 'privacy.erasure.done', 'privacy.settings.changed']) {
    check(auditCsv.includes(action), `the audit log holds ${action}`);
  }
  check(!auditCsv.includes('lea.e2e@example.com') && !auditCsv.includes(EMAIL.toLowerCase()), 'and no customer\'s email');
  await context.close();

  // --- a read-only user
  const ro = await newPage(browser);
  await signIn(ro.page, READ_ONLY);
  const roCustomer = await ro.page.goto(customerUrl);
  const roPage = await ro.page.content();
  check(roCustomer.status() === 403 && roPage.includes('personal data') && (await ro.page.getByRole('link', { name: 'Unmerge' }).count()) === 0,
    `a read-only token cannot open a customer (personal data: ${roCustomer.status()})`);
  await accessible(ro.page, 'customer refused to a read-only token');
  const roPrivacy = await ro.page.goto(`${BASE}/console/privacy`);
  check(roPrivacy.status() === 403, `a read-only token sees no privacy request (${roPrivacy.status()})`);
  await ro.page.goto(`${BASE}/console/audiences`);
  check((await ro.page.content()).includes('read-only'), 'a read-only token sees its role');
  check((await ro.page.locator('form[action="/console/audiences"]').count()) === 0, 'nor an audience editor');
  const csrf = await ro.page.locator('input[name="csrf"]').first().inputValue();
  // Posted by hand with a valid form token: the service refuses the role.
  const byHand = await ro.page.request.post(`${customerUrl}/unmerge/1`, { form: { csrf } });
  check(byHand.status() === 403, `a read-only post is refused (${byHand.status()})`);
  // A forged post (another site's page: no form token, another origin): refused.
  const forged = await ro.page.request.post(`${BASE}/console/sign-out`, {
    form: { csrf: 'forged' }, headers: { origin: 'https://evil.example' },
  });
  check(forged.status() === 403, `a forged post is refused (${forged.status()})`);
  await ro.context.close();
} finally {
  await browser.close();
}

check(foreign.length === 0, `no request to another origin${foreign.length ? `: ${foreign.slice(0, 5).join(', ')}` : ''}`);
console.log(`screenshots in ${SHOTS}`);
if (failures > 0) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
console.log('console e2e: every check passed');
