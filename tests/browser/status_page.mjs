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
  // (The wrong tokens below are answered 401 on purpose; Chromium logs it.)
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

  // Write-back: the setpoint's dialog, as a technician goes through it.
  const sp = page.locator('.device[data-name="pump"] tr[data-tag="setpoint"]');
  // u16 × 0.1: one decimal, as the register holds tenths.
  await sp.locator('.number').filter({ hasText: /^40\.0$/ }).waitFor({ timeout: WAIT });
  check(true, 'the writable setpoint shows 40.0 (its scale\'s one decimal)');
  check((await temp.locator('button.write').count()) === 0, 'a tag that is not writable has no Write button');
  await sp.locator('button.write').click();
  await page.locator('#write-dialog[open]').waitFor({ timeout: WAIT });
  check((await page.locator('#write-target').textContent()) === 'pump / setpoint', 'the dialog names the device and tag');
  check((await page.locator('#write-now').textContent()) === '40.0', 'with the value now');
  check((await page.locator('#write-unit').textContent()) === 'degC', 'and its unit');
  check(/From 20 to 80 degC/.test(await page.locator('#write-limits').textContent()), 'and the limits');
  check((await page.evaluate(() => document.activeElement.id)) === 'write-input', 'the value input has the focus');

  // Out of range: refused on the page, no confirmation offered ...
  await page.keyboard.type('95');
  await page.keyboard.press('Enter');
  const problem = await page.locator('#write-problem').textContent();
  check(/above the highest value accepted, 80 degC/.test(problem), `95 is refused on the page (${problem})`);
  check(await page.locator('#write-confirm').isHidden(), 'with no confirmation offered');
  // ... and by the gateway, which checks again whatever the page did.
  const refused = await fetch(url + 'api/tags/pump/setpoint/write', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + token },
    body: JSON.stringify({ v: 95 }),
  });
  const refusal = await refused.json();
  check(
    refused.status === 409 && refusal.result === 'rejected' && refusal.reason === 'out_of_range',
    `the gateway refuses 95 too (${refused.status} ${JSON.stringify(refusal)})`
  );

  // A valid value; at the confirmation, Enter is Cancel, not Write.
  await page.fill('#write-input', '42.5');
  await page.keyboard.press('Enter');
  await page.locator('#write-confirm:not([hidden])').waitFor({ timeout: WAIT });
  const question = await page.locator('#write-question').textContent();
  check(
    question === 'Write 42.5 degC to pump / setpoint (now 40.0 degC)? This changes the device.',
    `the confirmation says what will change (${question})`
  );
  check((await page.evaluate(() => document.activeElement.id)) === 'write-no', 'Cancel has the focus, not Write');
  await page.locator('#write-dialog').screenshot({ path: out + '/write-dialog-confirm.png' });
  await page.keyboard.press('Enter');
  check(!(await page.locator('#write-dialog').evaluate((d) => d.open)), 'Enter at the confirmation cancels');

  // The real write, with a token the gateway no longer takes: asked once
  // more, as for an acknowledgement.
  await page.evaluate(() => sessionStorage.setItem('fieldgate-token', 'an-old-token'));
  await sp.locator('button.write').click();
  await page.locator('#write-dialog[open]').waitFor({ timeout: WAIT });
  await page.fill('#write-input', '42.5');
  await page.click('#write-next');
  await page.click('#write-go');
  await page.locator('#token-dialog[open]').waitFor({ timeout: WAIT });
  check(/refused/.test(await page.locator('#token-why').textContent()), 'a refused token is asked for again');
  await page.fill('#token-input', token);
  await page.click('#token-ok');
  // Whatever the answer, the dialog says it; it must say verified.
  const outcome = page.locator('#write-outcome:not([data-result="sending"])');
  await outcome.waitFor({ timeout: 2 * WAIT });
  const said = await outcome.textContent();
  const detail = await page.locator('#write-detail').textContent();
  await page.locator('#write-dialog').screenshot({ path: out + '/write-dialog-verified.png' });
  check(
    (await outcome.getAttribute('data-result')) === 'verified' && said === 'Verified: read back 42.5 degC',
    `the dialog says verified (${said} | ${detail})`
  );
  check(/was 40\.0 degC/.test(detail), 'with the value before');
  await page.keyboard.press('Enter'); // Close has the focus
  check(!(await page.locator('#write-dialog').evaluate((d) => d.open)), 'the dialog closes');
  await sp.locator('.number').filter({ hasText: /^42\.5$/ }).waitFor({ timeout: WAIT });
  check(true, 'the page shows the new value at the next poll');

  // Phone size: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `fits a phone-sized screen (overflow ${overflow}px)`);
  await page.screenshot({ path: out + '/status-page-phone.png', fullPage: true });

  check(refusals === 2, `two refused requests, the wrong tokens (${refusals})`);
  check(problems.length === 0, 'no console errors: ' + (problems.join('; ') || 'none'));
} catch (e) {
  console.log('FAIL: ' + e.message.split('\n')[0]);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
