// The payment confirmation page (/ui/confirm, docs/API.md §9: PSD2 dynamic linking) in
// headless Chromium with a virtual authenticator, on both deployments. Run it through
// `.ci/e2e.sh` (same variables as ui.spec.mjs).
//
//   (a) a user with a passkey creates a payment through the API and opens
//       /ui/confirm?transaction=<id>: amount in the locale's format with its currency, payee,
//       IBAN in groups and the reference are on screen while the authenticator has not been
//       asked for anything (no navigator.credentials.get, no ceremony started, the passkey's
//       signature counter unchanged) — the page never starts the ceremony by itself;
//   (b) "Confirm with passkey" → "Payment confirmed."; the confirmation is a JWS signed with
//       a key of the JWKS, `typ` txn-confirmation+jwt, whose `tx_hash` is the transaction's
//       and the RFC 8785 hash of exactly the details shown, `linking` "webauthn";
//   (c) the same page in German shows "1.234,56 €"; a batch shows its total and every payee;
//   (d) the TOTP variant: a wrong code is refused next to the field, the right one confirms
//       (`linking` "server"), and the page goes on to a same-origin `return=` (a foreign one
//       is ignored); a confirmed transaction cannot be confirmed again;
//   every page passes axe-core (serious/critical) with no request to another origin, no
//   script error, no CSP or Trusted Types violation (harness.mjs). Screenshots in
//   E2E_ARTIFACTS.

import { createHash, createPublicKey, constants, verify } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ARTIFACTS, BACKENDS, Browser, Mailbox, PASSWORD, check, freshTotp, sleep, startService, reportFailure, runOnEachBackend } from './harness.mjs';

const PAYMENT = {
  type: 'payment_initiation',
  instructedAmount: { currency: 'EUR', amount: '1234.56' },
  creditorName: 'Muster Handels GmbH',
  creditorAccount: { iban: 'DE89370400440532013000' },
  remittanceInformationUnstructured: 'Invoice 2026-42',
};
const IBAN_GROUPED = 'DE89 3704 0044 0532 0130 00';

// ---------------------------------------------------------------------------------------
// The API, called from the page through the SDK the service ships (the session cookie is
// the browser's, as for any integrator's front end)
// ---------------------------------------------------------------------------------------

/** Runs `client[method](...args)` of the SDK in the page; returns the SDK's Result. */
async function sdk(page, method, ...args) {
  return page.evaluate(
    async ([name, params]) => {
      const { AuthClient } = await import('/ui/sdk.js');
      const client = new AuthClient();
      return client[name](...params);
    },
    [method, args],
  );
}

async function expectOk(page, method, ...args) {
  const answer = await sdk(page, method, ...args);
  check(answer.ok, `${method}: ${JSON.stringify(answer)}`);
  return answer.data;
}

// ---------------------------------------------------------------------------------------
// The confirmation, checked as a payment backend would (offline, with the JWKS)
// ---------------------------------------------------------------------------------------

/** RFC 8785 for what payment details are made of (objects, arrays, strings): sorted keys. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`;
  }
  check(typeof value === 'string', `details hold only strings here, not ${typeof value}`);
  return JSON.stringify(value);
}

const txHash = (details) => createHash('sha256').update(canonical(details)).digest('base64url');

async function verifiedClaims(baseUrl, jws) {
  const [header64, payload64, signature64] = jws.split('.');
  const header = JSON.parse(Buffer.from(header64, 'base64url').toString());
  check(header.typ === 'txn-confirmation+jwt', `typ: ${header.typ}`);
  const metadata = await (await fetch(`${baseUrl}/.well-known/openid-configuration`)).json();
  const { keys } = await (await fetch(metadata.jwks_uri)).json();
  const jwk = keys.find((key) => key.kid === header.kid);
  check(jwk, `the JWKS has the key ${header.kid}`);
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${header64}.${payload64}`);
  const signature = Buffer.from(signature64, 'base64url');
  const valid = {
    ES256: () => verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature),
    PS256: () => verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature),
    EdDSA: () => verify(null, data, key, signature),
  }[header.alg];
  check(valid && valid(), `the confirmation's ${header.alg} signature verifies with the JWKS`);
  return JSON.parse(Buffer.from(payload64, 'base64url').toString());
}

// ---------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------

async function story(backend) {
  const work = mkdtempSync(join(tmpdir(), `lcauth-confirm-${backend}-`));
  const mailbox = new Mailbox();
  await mailbox.listen();
  const service = await startService(backend, mailbox, work);
  const email = `confirm-${backend}-${randomBytes(4).toString('hex')}@example.com`;
  const usedSteps = new Set();
  const browsers = [];
  let step = 'start';
  const stepDone = (name) => console.log(`ok   ${backend}: ${name}`);
  try {
    const me = await Browser.open(`${backend}-confirm`, service.baseUrl);
    browsers.push(me);
    const { page } = me;
    // Every call of the browser's WebAuthn API, counted per page load.
    await page.addInitScript(() => {
      window.__credentialsGet = 0;
      const original = navigator.credentials.get.bind(navigator.credentials);
      navigator.credentials.get = (...args) => {
        window.__credentialsGet += 1;
        return original(...args);
      };
    });
    const ceremonies = [];
    page.on('request', (request) => {
      if (/\/auth\/transactions\/[^/]+\/(webauthn\/start|webauthn\/finish|totp)$/.test(request.url())) {
        ceremonies.push(request.url());
      }
    });

    step = 'a user with a passkey and an authenticator app (through the SDK)';
    await me.goto('/ui/register');
    await expectOk(page, 'register', email, PASSWORD);
    const link = await mailbox.link(email, /https?:\/\/\S+\/verify-email\?token=[A-Za-z0-9_-]+/);
    await expectOk(page, 'verifyEmail', new URL(link).searchParams.get('token'));
    await expectOk(page, 'login', email, PASSWORD);
    await expectOk(page, 'registerPasskey', { name: 'e2e', currentPassword: PASSWORD });
    // A second factor after the first: fresh MFA (the passkey), then the app.
    await expectOk(page, 'authenticateWithPasskey');
    const setup = await expectOk(page, 'setupTotp', PASSWORD);
    await expectOk(page, 'verifyTotp', await freshTotp(setup.secret, usedSteps));
    stepDone(step);

    step = '(a) the payment is shown before the authenticator is asked for anything';
    const created = await expectOk(page, 'createTransaction', PAYMENT);
    check(created.tx_hash === txHash(PAYMENT), `tx_hash ${created.tx_hash} is the RFC 8785 hash of the details`);
    check(created.methods.includes('webauthn') && created.methods.includes('totp'), `methods: ${created.methods}`);
    const counterBefore = (await me.credentials())[0].signCount;
    await me.goto(`/ui/confirm?transaction=${encodeURIComponent(created.transaction_id)}`);
    await me.expectPage('Confirm a payment', '/ui/confirm');
    const payment = page.locator('#txn-payments .payment');
    await payment.locator('[data-field="amount"]', { hasText: '1,234.56' }).waitFor();
    const amount = await payment.locator('[data-field="amount"]').textContent();
    check(!(await page.locator('#txn-total').isVisible()), 'one payment has no total line');
    check(amount.includes('€') && amount.includes('1,234.56'), `amount with its currency: ${amount}`);
    await payment.getByText('Pay €1,234.56 to Muster Handels GmbH').waitFor();
    check((await payment.locator('[data-field="creditor"]').textContent()) === PAYMENT.creditorName, 'payee');
    check((await payment.locator('[data-field="iban"]').textContent()) === IBAN_GROUPED, 'IBAN in groups of four');
    check((await payment.locator('[data-field="remittance"]').textContent()) === 'Invoice 2026-42', 'reference');
    const confirmButton = page.getByRole('button', { name: 'Confirm with passkey' });
    await confirmButton.waitFor();
    check(await page.getByLabel('Code from your authenticator app').isVisible(), 'the TOTP field is offered too');
    // Time for any ceremony the page might start by itself: none may.
    await page.waitForLoadState('networkidle');
    await sleep(1000);
    check((await page.evaluate(() => window.__credentialsGet)) === 0, 'no navigator.credentials.get before the click');
    check(ceremonies.length === 0, `no ceremony before the click: ${ceremonies}`);
    check((await me.credentials())[0].signCount === counterBefore, 'the authenticator has signed nothing yet');
    await me.audit('confirm-shown');
    stepDone(step);

    step = '(b) confirm with the passkey; the JWS binds exactly these details';
    const finished = page.waitForResponse((r) => r.url().endsWith('/webauthn/finish') && r.request().method() === 'POST');
    await confirmButton.click();
    const answer = await finished;
    check(answer.status() === 200, `finish answered ${answer.status()}`);
    await me.expectStatus('Payment confirmed.');
    check(!(await confirmButton.isVisible()), 'the factors are gone once confirmed');
    check((await page.evaluate(() => window.__credentialsGet)) === 1, 'one assertion, on the click');
    check((await me.credentials())[0].signCount > counterBefore, 'the authenticator signed once');
    const { confirmation } = await answer.json();
    const claims = await verifiedClaims(service.baseUrl, confirmation);
    check(claims.tx_hash === created.tx_hash, `tx_hash ${claims.tx_hash} is the transaction's ${created.tx_hash}`);
    check(claims.tx_hash === txHash(claims.details), 'tx_hash is the hash of the signed details');
    check(canonical(claims.details) === canonical(PAYMENT), `signed details: ${JSON.stringify(claims.details)}`);
    check(claims.txn === created.transaction_id, `txn: ${claims.txn}`);
    check(claims.linking === 'webauthn', `linking: ${claims.linking}`);
    await me.audit('confirmed-passkey');
    // Confirmed once: opening it again offers nothing to sign.
    await me.goto(`/ui/confirm?transaction=${encodeURIComponent(created.transaction_id)}`);
    await me.expectStatus('Payment confirmed.');
    check(!(await confirmButton.isVisible()), 'a confirmed transaction offers no factor');
    stepDone(step);

    step = '(c) German amounts; a batch shows its total and every payee';
    // A German browser with the same session (a transaction is seen only by its session).
    const german = await Browser.open(`${backend}-confirm-de`, service.baseUrl, {
      acceptLanguage: 'de-DE,de;q=0.9',
      locale: 'de-DE',
    });
    browsers.push(german);
    await german.context.addCookies(await me.context.cookies());
    await german.goto(`/ui/confirm?transaction=${encodeURIComponent(created.transaction_id)}`);
    await german.expectPage('Zahlung bestätigen', '/ui/confirm');
    const germanAmount = german.page.locator('#txn-payments [data-field="amount"]', { hasText: '1.234,56' });
    await germanAmount.waitFor();
    check((await germanAmount.textContent()).includes('€'), 'the euro sign in German too');
    await german.expectStatus('Zahlung bestätigt.');
    await german.audit('confirm-de');
    const second = { ...PAYMENT, instructedAmount: { currency: 'EUR', amount: '10.44' }, creditorName: 'Stadtwerke' };
    const batch = await expectOk(page, 'createTransaction', [PAYMENT, second]);
    await me.goto(`/ui/confirm?transaction=${encodeURIComponent(batch.transaction_id)}`);
    await page.locator('#txn-total-amount', { hasText: '1,245.00' }).waitFor();
    check((await page.locator('#txn-payments .payment').count()) === 2, 'both payments listed');
    await page.locator('#txn-payments [data-field="creditor"]', { hasText: 'Stadtwerke' }).waitFor();
    await page.getByText('these 2 payments').waitFor();
    await me.audit('confirm-batch');
    stepDone(step);

    step = '(d) TOTP: a wrong code, then the right one, then on to a same-origin return';
    const byCode = await expectOk(page, 'createTransaction', PAYMENT);
    const query = (target) =>
      new URLSearchParams({ transaction: byCode.transaction_id, return: target }).toString();
    // A foreign return target is not followed (checked after the confirmation below).
    await me.goto(`/ui/confirm?${query('/ui/account')}`);
    await page.locator('#txn-payments [data-field="creditor"]', { hasText: PAYMENT.creditorName }).waitFor();
    await page.getByLabel('Code from your authenticator app').fill('000000');
    await page.getByRole('button', { name: 'Confirm with code' }).click();
    await me.expectAlert('That code is not right.');
    check((await page.getByLabel('Code from your authenticator app').getAttribute('aria-invalid')) === 'true', 'the field is marked');
    await me.audit('confirm-wrong-code');
    // (A fresh code may take up to 30 s: wait for it before waiting for the answer.)
    const code = await freshTotp(setup.secret, usedSteps);
    // The page moves on at once: the answer is read on its way to the page.
    let totpAnswer = null;
    await page.route('**/auth/transactions/*/totp', async (route) => {
      const response = await route.fetch();
      totpAnswer = { status: response.status(), body: await response.json() };
      await route.fulfill({ response });
    });
    await page.getByLabel('Code from your authenticator app').fill(code);
    await page.getByRole('button', { name: 'Confirm with code' }).click();
    await me.expectPage('Your account', '/ui/account');
    await page.unroute('**/auth/transactions/*/totp');
    check(totpAnswer?.status === 200, `totp answered ${JSON.stringify(totpAnswer)}`);
    const serverLinked = await verifiedClaims(service.baseUrl, totpAnswer.body.confirmation);
    check(serverLinked.linking === 'server' && serverLinked.tx_hash === byCode.tx_hash, JSON.stringify(serverLinked));
    // Confirmed: a second confirmation of it is refused, and a foreign return= stays here.
    await me.goto(`/ui/confirm?${query('//evil.example/steal')}`);
    await me.expectStatus('Payment confirmed.');
    await sleep(500);
    check(new URL(page.url()).origin === service.baseUrl, `stayed on the service: ${page.url()}`);
    const again = await sdk(page, 'confirmTransactionWithTotp', byCode.transaction_id, '123456');
    check(!again.ok && again.code === 'invalid_transaction', `confirmed twice: ${JSON.stringify(again)}`);
    stepDone(step);

    step = 'a link without a transaction says so';
    await me.goto('/ui/confirm');
    await me.expectAlert('This link is incomplete');
    await me.audit('confirm-missing');
    stepDone(step);
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
