// The hosted pages (/ui/) in headless Chromium, as a person uses them, on both deployments:
// the embedded one (SQLite, in-process store) and the production one (APP_ENV=production,
// PostgreSQL, Redis). Run it through `.ci/e2e.sh`, which builds the binary and passes:
//   E2E_BINARY      the service binary
//   E2E_ARTIFACTS   where the screenshots go (one per page and step; kept by CI)
//   E2E_CHROMIUM    the browser (default /usr/bin/chromium)
//   E2E_BACKENDS    "embedded,production" (default) or one of them
//
// Each deployment gets its own service process, started here with an SMTP sink (smtp-server
// + mailparser) as its mail server, so the links are the ones in the real emails. The
// story, each step checking what the person sees:
//   register → open the verification link from the email → sign in → enrol TOTP (the code
//   computed from the QR's secret) → sign out → sign in with password + TOTP → add a
//   passkey (Chromium's virtual authenticator) → sign out → sign in with the passkey alone
//   → a second browser signs in with a recovery code; the first signs it out → reset the
//   forgotten password from the emailed link → sign in with the new password + passkey →
//   a sensitive action once freshness expired opens the step-up prompt (TOTP).
// On every page: axe-core finds no serious or critical violation, no request leaves the
// origin, no script error, no Content-Security-Policy or Trusted Types violation. Plus: the
// keyboard alone can sign in, the pages fit 360 px, German is chosen by Accept-Language.
// (The service, the mailbox, TOTP and the browser with its checks are in harness.mjs.)


import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  ARTIFACTS,
  BACKENDS,
  Browser,
  Mailbox,
  PASSWORD,
  check,
  freshTotp,
  sleep,
  reportFailure,
  runOnEachBackend,
  startService,
} from './harness.mjs';

const NEW_PASSWORD = 'a quite different passphrase now';

// ---------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------

async function story(backend) {
  const work = mkdtempSync(join(tmpdir(), `lcauth-ui-${backend}-`));
  const mailbox = new Mailbox();
  await mailbox.listen();
  // A short step-up freshness, so the story can show the step-up prompt without waiting
  // five minutes.
  const service = await startService(backend, mailbox, work, { STEP_UP_MAX_AGE_SECONDS: '20' });
  const email = `ui-${backend}-${randomBytes(4).toString('hex')}@example.com`;
  const usedSteps = new Set();
  const browsers = [];
  const open = async (label, options) => {
    const browser = await Browser.open(`${backend}-${label}`, service.baseUrl, options);
    browsers.push(browser);
    return browser;
  };
  const started = Date.now();
  let step = 'start';
  const stepDone = (name) => {
    console.log(`ok   ${backend}: ${name}`);
  };
  try {
    const me = await open('main');
    const { page } = me;

    step = '/ui/ sends a visitor to sign in';
    await me.goto('/ui/');
    await me.expectPage('Sign in', '/ui/login');
    check(new URL(page.url()).searchParams.get('return') === '/ui/account', `return target: ${page.url()}`);
    await me.audit('login');
    stepDone(step);

    step = 'register';
    await page.getByRole('link', { name: 'Create an account' }).click();
    await me.expectPage('Create an account', '/ui/register');
    await me.audit('register');
    // A weak password is explained next to the field, in plain language.
    await page.getByLabel('Email address').fill(email);
    await page.getByLabel('New password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    await me.expectAlert('Please choose a stronger password.');
    await page.locator('#password-error', { hasText: 'It is too short.' }).waitFor();
    check((await page.getByLabel('New password').getAttribute('aria-invalid')) === 'true', 'the weak password is marked invalid');
    await me.audit('register-weak-password');
    await page.getByLabel('New password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await me.expectStatus('Check your inbox');
    await me.audit('registered');
    stepDone(step);

    step = 'verify the email from its link';
    const verifyLink = await mailbox.link(email, /https?:\/\/\S+\/verify-email\?token=[A-Za-z0-9_-]+/);
    check(verifyLink.startsWith(`${service.baseUrl}/verify-email?token=`), `link: ${verifyLink}`);
    await page.goto(verifyLink);
    await me.expectPage('Confirm your email address', '/verify-email');
    await me.audit('verify-email');
    await page.getByRole('button', { name: 'Confirm email address' }).click();
    await me.expectStatus('Your email address is confirmed');
    stepDone(step);

    step = 'sign in with the keyboard alone (a hostile return= is ignored)';
    // The URL parser drops the tab: "/\t/evil.example" would be "//evil.example".
    await me.goto('/ui/login?return=%2F%09%2Fevil.example%2Fsteal');
    await me.expectPage('Sign in', '/ui/login');
    await page.keyboard.press('Tab'); // the skip link
    check(await page.evaluate(() => document.activeElement?.classList.contains('skip-link')), 'the first Tab reaches the skip link');
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement?.id === 'email'), 'the next Tab reaches the email field');
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await me.expectPage('Your account', '/ui/account');
    check(new URL(page.url()).origin === service.baseUrl, `stayed on the service: ${page.url()}`);
    await page.locator('#profile-email', { hasText: email }).waitFor();
    await me.audit('account');
    stepDone(step);

    step = 'enrol TOTP from the QR code';
    await page.getByRole('button', { name: 'Set up authenticator app' }).click();
    await page.locator('#totp-qr[src^="data:image/svg+xml"]').waitFor();
    const secret = (await page.locator('#totp-secret').textContent()).trim();
    check(/^[A-Z2-7]{16,}$/.test(secret), `secret: ${secret}`);
    await me.audit('totp-enrol');
    // (The step-up dialog has a field of the same label; it is closed.)
    await page.locator('#totp-enroll').getByLabel('Code from your authenticator app').fill(await freshTotp(secret, usedSteps));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await me.expectStatus('Your authenticator app is turned on.');
    const codes = (await page.locator('#recovery-list li').allTextContents()).map((c) => c.trim());
    check(codes.length === 10, `recovery codes shown: ${codes.length}`);
    await page.locator('#totp-state', { hasText: 'Your authenticator app is set up.' }).waitFor();
    await me.audit('totp-enabled');
    stepDone(step);

    step = 'sign out, sign in with password + TOTP';
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await me.expectPage('Sign in', '/ui/login');
    await me.signIn(email, PASSWORD);
    await me.expectPage('Second step of sign-in', '/ui/mfa');
    await me.audit('mfa');
    // A wrong code is said next to the field.
    await page.getByLabel('Code from your authenticator app').fill('000000');
    await page.getByRole('button', { name: 'Verify' }).first().click();
    await me.expectAlert('That code is not right.');
    await me.audit('mfa-wrong-code');
    await page.getByLabel('Code from your authenticator app').fill(await freshTotp(secret, usedSteps));
    await page.getByRole('button', { name: 'Verify' }).first().click();
    await me.expectPage('Your account', '/ui/account');
    stepDone(step);

    step = 'add a passkey';
    await page.getByLabel('Name for the new passkey').fill('Test laptop');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await me.expectStatus('The passkey was added.');
    await page.locator('#passkey-list li', { hasText: 'Test laptop' }).waitFor();
    check((await me.credentials()).length === 1, 'the authenticator holds one passkey');
    await me.audit('passkey-added');
    stepDone(step);

    step = 'sign out, sign in with the passkey alone (autofill)';
    // The sign-in page asks for passkey autofill (conditional mediation) as it opens; the
    // virtual authenticator answers at once, as a person picking the passkey would.
    const autofilled = page.waitForResponse(
      (r) => r.url().endsWith('/auth/webauthn/login/finish') && r.request().method() === 'POST',
    );
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    const finish = await autofilled;
    check(finish.status() === 200, `passkey autofill sign-in answered ${finish.status()}`);
    await page.waitForURL((url) => url.pathname === '/ui/account');
    await me.expectPage('Your account', '/ui/account');
    await page.locator('#profile-email', { hasText: email }).waitFor();
    // From here on, the person types passwords: autofill waits.
    await me.presence(false);
    stepDone(step);

    step = 'sign in with the passkey button, in a browser without autofill';
    const button = await open('passkey-button');
    await button.page.addInitScript(() => {
      PublicKeyCredential.isConditionalMediationAvailable = async () => false;
    });
    await button.addCredential((await me.credentials())[0]);
    await button.goto('/ui/login');
    await button.expectPage('Sign in', '/ui/login');
    await button.page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await button.expectPage('Your account', '/ui/account');
    await button.page.locator('#profile-email', { hasText: email }).waitFor();
    await button.audit('passkey-button-sign-in');
    // One passkey, two virtual authenticators: hand the signature counter back, or the
    // service would (rightly) refuse the main copy's next assertion as a cloned key.
    const used = (await button.credentials())[0];
    await me.cdp.send('WebAuthn.removeCredential', { authenticatorId: me.authenticatorId, credentialId: used.credentialId });
    await me.addCredential(used);
    stepDone(step);

    step = 'a second browser signs in with a recovery code; the first signs it out';
    const other = await open('other');
    await other.goto('/ui/login');
    await other.signIn(email, PASSWORD);
    await other.expectPage('Second step of sign-in', '/ui/mfa');
    await other.page.getByLabel('Recovery code').fill(codes[0]);
    await other.page.getByRole('button', { name: 'Verify' }).nth(1).click();
    await other.expectPage('Your account', '/ui/account');
    await other.audit('recovery-sign-in');
    await me.page.reload();
    await me.expectPage('Your account', '/ui/account');
    // Sessions: this one, the passkey-button browser's, and the other browser's (newest).
    await page.locator('#session-list li').nth(2).waitFor();
    check((await page.locator('#session-list li').count()) === 3, 'three sessions listed');
    await page.locator('#session-list li', { hasText: 'This session' }).waitFor();
    await page.locator('#session-list li:not(:has-text("This session"))').first().getByRole('button', { name: /^End session/ }).waitFor();
    const before = await page.locator('#session-list li').count();
    // The list is newest first: the first session with an "End session" button is the
    // other browser's.
    const newest = await page.evaluate(() =>
      [...document.querySelectorAll('#session-list li')].find((li) => li.querySelector('button'))?.dataset.sessionId);
    await page.locator(`#session-list li[data-session-id="${newest}"]`).getByRole('button', { name: /^End session/ }).click();
    await me.expectStatus('That session was signed out.');
    await page.waitForFunction((n) => document.querySelectorAll('#session-list li').length === n - 1, before);
    await me.audit('session-revoked');
    await other.page.reload();
    await other.expectPage('Sign in', '/ui/login');
    // The passkey-button browser is still signed in.
    await button.page.reload();
    await button.expectPage('Your account', '/ui/account');
    stepDone(step);

    step = 'reset the forgotten password from the emailed link';
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await me.expectPage('Sign in', '/ui/login');
    await page.getByRole('link', { name: 'Forgotten your password?' }).click();
    await me.expectPage('Forgotten password', '/ui/forgot-password');
    await page.getByLabel('Email address').fill(email);
    await page.getByRole('button', { name: 'Send reset link' }).click();
    await me.expectStatus('If an account uses this address');
    await me.audit('forgot-password');
    const resetLink = await mailbox.link(email, /https?:\/\/\S+\/reset-password\?token=[A-Za-z0-9_-]+/);
    await page.goto(resetLink);
    await me.expectPage('Choose a new password', '/reset-password');
    await me.audit('reset-password');
    await page.getByLabel('New password').fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Set new password' }).click();
    await me.expectStatus('Your password was changed and every session signed out.');
    await me.goto('/ui/login');
    await me.signIn(email, NEW_PASSWORD);
    await me.expectPage('Second step of sign-in', '/ui/mfa');
    await me.presence(true);
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await me.expectPage('Your account', '/ui/account');
    await me.audit('signed-in-after-reset');
    stepDone(step);

    step = 'a sensitive action after freshness expired asks for a second factor';
    // STEP_UP_MAX_AGE_SECONDS is 20 here: let the sign-in above grow stale.
    await sleep(21_000);
    await page.getByRole('button', { name: 'Create new recovery codes' }).click();
    const dialog = page.getByRole('dialog', { name: 'Confirm it is you' });
    await dialog.waitFor();
    await me.audit('step-up-dialog');
    await dialog.getByLabel('Code from your authenticator app').fill(await freshTotp(secret, usedSteps));
    await dialog.getByRole('button', { name: 'Verify' }).click();
    await me.expectStatus('New recovery codes were created');
    check((await page.locator('#recovery-list li').count()) === 10, 'ten new recovery codes shown');
    check(!(await dialog.isVisible()), 'the dialog closed');
    stepDone(step);

    step = 'German, and 360 px wide';
    const german = await open('de', { acceptLanguage: 'de-DE,de;q=0.9', locale: 'de-DE', viewport: { width: 360, height: 800 } });
    await german.goto('/ui/login');
    await german.expectPage('Anmelden', '/ui/login');
    check((await german.page.getAttribute('html', 'lang')) === 'de', 'lang="de"');
    await german.page.getByRole('button', { name: 'Mit Passkey anmelden' }).waitFor();
    const overflow = await german.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the page scrolls sideways by ${overflow} px at 360 px`);
    await german.audit('login-de-360');
    await german.goto('/ui/register');
    await german.expectPage('Konto eröffnen', '/ui/register');
    await german.audit('register-de-360');
    stepDone(step);

    console.log(`ok   ${backend}: the whole story in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    await reportFailure({ backend, step, error, browsers, service });
    throw error;
  } finally {
    for (const browser of browsers) await browser.close().catch(() => {});
    await service.stop();
    await mailbox.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await runOnEachBackend(story);
