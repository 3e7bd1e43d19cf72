// The status page in headless Chromium: what a technician at the panel
// sees and does. Run by tests/browser/run.sh, which starts the simulator
// and the gateway; arguments: page URL, token, output folder, chromium.
//
// Every wait is bounded (WAIT ms); the first failed check ends the run
// with a message saying what the page showed instead.

import { chromium } from '../../target/browser/node_modules/playwright-core/index.mjs';

const [url, token, out, executablePath] = process.argv.slice(2);
const WAIT = 15000;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const problems = [];
let failed = false;

function check(ok, what) {
  if (ok) {
    console.log('ok: ' + what);
  } else {
    console.log('FAIL: ' + what);
    failed = true;
  }
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // A CSP violation, a script error or a failed request shows here.
  // (The wrong token below is answered 401 on purpose; Chromium logs it.)
  let refusals = 0;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (/status of 401/.test(m.text())) refusals++;
    else problems.push('console: ' + m.text());
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));

  await page.goto(url);

  // Devices, live values, bad quality.
  const temp = page.locator('.device[data-name="pump"] tr[data-tag="bearing_temp"]');
  await temp.locator('.number').filter({ hasText: /^-?\d/ }).waitFor({ timeout: WAIT });
  const value = await temp.locator('.number').textContent();
  check(/^-?\d+(\.\d+)?$/.test(value), `pump.bearing_temp shows a number (${value})`);
  check((await temp.locator('.unit').textContent()) === 'degC', 'with its unit');
  check(await page.locator('.device[data-name="pump"][data-state="polling"]').isVisible(), 'pump is polling');
  const dead = page.locator('.device[data-name="dead"][data-state="failing"]');
  await dead.waitFor({ timeout: WAIT });
  check(await dead.locator('tr.bad[data-tag="level"]').isVisible(), 'the failing device\'s tag is marked bad');
  check(/bad/.test(await dead.locator('.quality').first().textContent()), 'and says why');
  check(await page.locator('.link[data-label^="tcp:"][data-connected="true"]').first().isVisible(), 'a connected link is shown');
  check(/^[0-9a-f]{12}$/.test(await page.locator('#config-hash').textContent()), 'the config hash is shown');
  check(/^\d+\.\d+\.\d+/.test(await page.locator('#version').textContent()), 'the version is shown');
  check(/empty|waiting/.test(await page.locator('#outbox').textContent()), 'the outbox is shown');
  check(/^(synchronised|not synchronised|unknown)$/.test(await page.locator('#clock').textContent()), 'the clock state is shown');
  check((await page.locator('#live').getAttribute('data-state')) === 'live', 'the feed is live');
  check((await page.locator('#mqtt').textContent()) === 'connected', 'MQTT connected in the header');

  // A live update changes the value without a reload.
  const first = await temp.locator('.number').textContent();
  let changed = false;
  for (let i = 0; i < 30 && !changed; i++) {
    await page.waitForTimeout(500);
    changed = (await temp.locator('.number').textContent()) !== first;
  }
  check(changed, 'the value moves by itself (server-sent events)');

  // The active alarm, acknowledged with the token (a wrong one first).
  const alarm = page.locator('.alarm[data-rule="bearing_hot"]');
  await page.locator('.alarm[data-rule="bearing_hot"][data-state="active_unacked"]').waitFor({ timeout: WAIT });
  check(true, 'the active alarm is listed, not acknowledged');
  await alarm.locator('button.ack').click();
  await page.locator('#token-dialog[open]').waitFor({ timeout: WAIT });
  await page.fill('#token-input', 'not-the-token');
  await page.click('#token-ok');
  await page.locator('#token-dialog[open]').waitFor({ timeout: WAIT });
  check(/refused/.test(await page.locator('#token-why').textContent()), 'a wrong token is refused and asked again');
  await page.fill('#token-input', token);
  await page.click('#token-ok');
  await page.locator('.alarm[data-rule="bearing_hot"][data-state="active_acked"]').waitFor({ timeout: WAIT });
  check(true, 'acknowledged: the page shows the new state');
  await page.screenshot({ path: out + '/status-page.png', fullPage: true });

  // Shelving needs no second token.
  await alarm.locator('button.shelve').click();
  await page.locator('#shelve-dialog[open]').waitFor({ timeout: WAIT });
  await page.click('#shelve-dialog button[data-duration="1h"]');
  await page.locator('.alarm[data-rule="bearing_hot"][data-state="shelved"]').waitFor({ timeout: WAIT });
  check(!(await page.locator('#token-dialog').evaluate((d) => d.open)), 'shelved without asking for the token again');

  // Phone size: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `fits a phone-sized screen (overflow ${overflow}px)`);
  await page.screenshot({ path: out + '/status-page-phone.png', fullPage: true });

  check(refusals === 1, `one refused request, the wrong token (${refusals})`);
  check(problems.length === 0, 'no console errors: ' + (problems.join('; ') || 'none'));
} catch (e) {
  console.log('FAIL: ' + e.message.split('\n')[0]);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
