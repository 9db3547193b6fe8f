// A third party's payment through the hosted consent page (docs/API.md §8 "Payments (RFC
// 9396 …)", §9; docs/PSD2.md) in headless Chromium with a virtual authenticator, on both
// deployments, against the real binary. The relying party is simulated here: a confidential
// client ("merchant", client_secret_basic, `authorization_details_types:
// ["payment_initiation"]`) on another site (127.0.0.1, while the service is at localhost)
// that sends the browser to the authorization endpoint with PKCE, state, nonce and one
// payment in `authorization_details`, records its callback and talks to the token and
// introspection endpoints with plain fetch. Run through `.ci/e2e.sh` (same variables as
// ui.spec.mjs).
//
//   (a) a user with a passkey (user verification on) signs in and steps up with it;
//   (b) the relying party asks for EUR 1234.56 to "Merchant A": the consent page shows the
//       amount in the locale's format with its currency, the payee, the IBAN and the
//       reference, while the authenticator has not been asked for anything (no
//       navigator.credentials.get, the passkey's signature counter unchanged); the page
//       passes axe-core with the payment on screen;
//   (c) Allow → `403 transaction_confirmation_required` naming the request's transaction →
//       the confirmation section with the payment and "Confirm with passkey" (still no
//       WebAuthn call) → the passkey signs once → accept again → the callback gets `code`,
//       `state` and `iss`;
//   (d) the code buys tokens whose `authorization_details` are the request's, and the
//       client's introspection of the access token returns `tx_hash` = base64url(SHA-256(RFC
//       8785 JSON of the payment)), computed here with an independent canonicalizer;
//   (e) a second payment request, Deny → `error=access_denied`, no code.
// Every page also gets harness.mjs's checks (no request to a third origin, no script error,
// no CSP or Trusted Types violation); screenshots in E2E_ARTIFACTS.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import canonicalize from 'canonicalize';
import { ARTIFACTS, BACKENDS, Browser, Mailbox, PASSWORD, STEP_TIMEOUT_MS, check, freePort, sleep, startService, reportFailure, runOnEachBackend } from './harness.mjs';

const CLIENT_ID = 'merchant';
const CLIENT_SECRET = randomBytes(32).toString('base64url');
const PAYMENT = {
  type: 'payment_initiation',
  instructedAmount: { currency: 'EUR', amount: '1234.56' },
  creditorName: 'Merchant A',
  creditorAccount: { iban: 'DE89370400440532013000' },
  remittanceInformationUnstructured: 'Order 4711',
};
const IBAN_GROUPED = 'DE89 3704 0044 0532 0130 00';
const LOA_2 = 'urn:logicredit:loa:2';

const base64url = (bytes) => Buffer.from(bytes).toString('base64url');
/** §9's tx_hash: base64url(SHA-256(RFC 8785 canonical JSON)); one payment is hashed as the object. */
const txHash = (details) => createHash('sha256').update(canonicalize(details)).digest('base64url');

// ---------------------------------------------------------------------------------------
// The relying party: a confidential client asking for a payment
// ---------------------------------------------------------------------------------------

class Merchant {
  async listen() {
    this.port = await freePort();
    this.origin = `http://127.0.0.1:${this.port}`;
    this.redirectUri = `${this.origin}/cb`;
    this.pending = new Map();
    this.callbacks = [];
    this.server = createServer((request, response) => this.handle(request, response));
    await new Promise((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  close() {
    return new Promise((resolve) => this.server.close(resolve));
  }

  /** The client the service is started with (OIDC_CLIENTS_FILE). */
  clients() {
    return [
      {
        client_id: CLIENT_ID,
        client_name: 'Merchant Checkout',
        redirect_uris: [this.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        client_secret: CLIENT_SECRET,
        scope: 'openid',
        authorization_details_types: ['payment_initiation'],
      },
    ];
  }

  async discover(issuer) {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    check(response.ok, `discovery: ${response.status}`);
    this.metadata = await response.json();
    check(this.metadata.issuer === issuer, `issuer ${this.metadata.issuer}, expected ${issuer}`);
    check(
      this.metadata.authorization_details_types_supported?.includes('payment_initiation'),
      `discovery lists payment_initiation: ${this.metadata.authorization_details_types_supported}`,
    );
    check(this.metadata.introspection_endpoint, 'discovery has an introspection endpoint');
  }

  handle(request, response) {
    const url = new URL(request.url, this.origin);
    if (url.pathname === '/start') {
      const state = base64url(randomBytes(16));
      const verifier = base64url(randomBytes(32));
      this.pending.set(state, { verifier });
      const authorize = new URL(this.metadata.authorization_endpoint);
      const params = {
        response_type: 'code',
        client_id: CLIENT_ID,
        redirect_uri: this.redirectUri,
        scope: 'openid',
        state,
        nonce: base64url(randomBytes(16)),
        code_challenge: base64url(createHash('sha256').update(verifier).digest()),
        code_challenge_method: 'S256',
        authorization_details: JSON.stringify([PAYMENT]),
      };
      for (const [name, value] of Object.entries(params)) authorize.searchParams.set(name, value);
      response.writeHead(302, { Location: authorize.toString() });
      response.end();
      return;
    }
    if (url.pathname === '/cb') {
      this.callbacks.push(Object.fromEntries(url.searchParams));
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      response.end('<!doctype html><html lang="en"><title>Merchant</title><h1>Back at the merchant</h1></html>');
      return;
    }
    response.writeHead(url.pathname === '/favicon.ico' ? 204 : 404);
    response.end();
  }

  /** The newest callback, checked against the request it answers (state, iss). */
  lastCallback() {
    const callback = this.callbacks[this.callbacks.length - 1];
    check(callback, 'the callback was reached');
    check(this.pending.has(callback.state), `the callback's state is one we sent: ${JSON.stringify(callback)}`);
    check(callback.iss === this.metadata.issuer, `iss in the callback (RFC 9207): ${JSON.stringify(callback)}`);
    return callback;
  }

  /** client_secret_basic (RFC 6749 §2.3.1: form-encoded id and secret). */
  basic() {
    const pair = `${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`;
    return `Basic ${Buffer.from(pair).toString('base64')}`;
  }

  async post(endpoint, form) {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: this.basic() },
      body: new URLSearchParams(form),
    });
    return { status: response.status, body: await response.json() };
  }

  async exchange(callback) {
    const { verifier } = this.pending.get(callback.state);
    const answer = await this.post(this.metadata.token_endpoint, {
      grant_type: 'authorization_code',
      code: callback.code,
      redirect_uri: this.redirectUri,
      code_verifier: verifier,
    });
    check(answer.status === 200, `token endpoint: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }

  async introspect(token) {
    const answer = await this.post(this.metadata.introspection_endpoint, { token });
    check(answer.status === 200, `introspection: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }
}

// ---------------------------------------------------------------------------------------
// The API, called from the page through the SDK the service ships
// ---------------------------------------------------------------------------------------

async function expectOk(page, method, ...args) {
  const answer = await page.evaluate(
    async ([name, params]) => {
      const { AuthClient } = await import('/ui/sdk.js');
      return new AuthClient()[name](...params);
    },
    [method, args],
  );
  check(answer.ok, `${method}: ${JSON.stringify(answer)}`);
  return answer.data;
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

// ---------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------

async function story(backend) {
  const work = mkdtempSync(join(tmpdir(), `lcauth-consent-payment-${backend}-`));
  const mailbox = new Mailbox();
  await mailbox.listen();
  const merchant = new Merchant();
  await merchant.listen();
  const clientsFile = join(work, 'clients.json');
  writeFileSync(clientsFile, JSON.stringify(merchant.clients(), null, 2));
  const service = await startService(backend, mailbox, work, { OIDC_CLIENTS_FILE: clientsFile });
  await merchant.discover(service.baseUrl);
  const email = `consent-pay-${backend}-${randomBytes(4).toString('hex')}@example.com`;
  const browsers = [];
  let step = 'start';
  const stepDone = (name) => console.log(`ok   ${backend}: ${name}`);
  try {
    const me = await Browser.open(`${backend}-consent-payment`, service.baseUrl, { allowedOrigins: [merchant.origin] });
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
    // What the pages hear from the API, in order (a body is gone once its page navigated away).
    const answers = [];
    page.on('response', (response) => {
      const path = new URL(response.url()).pathname;
      if (/^\/auth\/(oauth\/requests|transactions)\//.test(path)) {
        answers.push({ method: response.request().method(), path, status: response.status(), body: response.json().catch(() => null) });
      }
    });

    step = '(a) a user with a passkey signs in and steps up with it (through the SDK)';
    await me.goto('/ui/register');
    await expectOk(page, 'register', email, PASSWORD);
    const link = await mailbox.link(email, /https?:\/\/\S+\/verify-email\?token=[A-Za-z0-9_-]+/);
    await expectOk(page, 'verifyEmail', new URL(link).searchParams.get('token'));
    await expectOk(page, 'login', email, PASSWORD);
    await expectOk(page, 'registerPasskey', { name: 'e2e', currentPassword: PASSWORD });
    await expectOk(page, 'authenticateWithPasskey');
    const credential = (await me.credentials())[0];
    check(credential, 'the virtual authenticator holds the passkey');
    stepDone(step);

    step = '(b) the merchant asks for a payment: the consent page shows it, no WebAuthn call yet';
    const counterBefore = (await me.credentials())[0].signCount;
    // The virtual authenticator answers any request at once (automatic presence): had a page
    // on the way asked it for anything, the signature counter below would show it. The
    // sign-in page the browser passes through (signed in already) opens no passkey
    // ceremony, not even autofill.
    const ceremonies = [];
    const recordCeremony = (request) => {
      if (/\/webauthn\/(login|authenticate)\/start$|\/webauthn\/start$/.test(request.url())) ceremonies.push(request.url());
    };
    page.on('request', recordCeremony);
    await page.goto(`${merchant.origin}/start`);
    await me.expectPage('Allow access', '/ui/consent');
    const requestId = new URL(page.url()).searchParams.get('request');
    check(requestId, `the consent page has ?request=: ${page.url()}`);
    await page.locator('#consent-intro', { hasText: 'Merchant Checkout' }).waitFor();
    const shown = page.locator('#consent-payments .payment');
    await shown.locator('[data-field="amount"]', { hasText: '1,234.56' }).waitFor();
    const amount = await shown.locator('[data-field="amount"]').textContent();
    check(amount.includes('€') && amount.includes('1,234.56'), `amount in en-US with its currency: ${amount}`);
    await shown.getByText('Pay €1,234.56 to Merchant A').waitFor();
    check((await shown.locator('[data-field="creditor"]').textContent()) === 'Merchant A', 'payee');
    check((await shown.locator('[data-field="iban"]').textContent()) === IBAN_GROUPED, 'IBAN in groups of four');
    check((await shown.locator('[data-field="remittance"]').textContent()) === 'Order 4711', 'reference');
    await page.getByRole('button', { name: 'Allow', exact: true }).waitFor();
    await page.getByRole('button', { name: 'Deny', exact: true }).waitFor();
    // The request info opened the §9 transaction for exactly these details.
    // The consent page's own reading of the request (the sign-in page read it first).
    const info = answers.findLast((a) => a.method === 'GET' && a.path === `/auth/oauth/requests/${requestId}` && a.status === 200);
    check(info, `the page read the request: ${JSON.stringify(answers)}`);
    info.body = await info.body;
    check(typeof info.body.transaction_id === 'string', `the request info names its transaction: ${JSON.stringify(info.body)}`);
    check(info.body.consent_required === true && info.body.step_up_required === false, `consent, no step-up: ${JSON.stringify(info.body)}`);
    check(canonicalize(info.body.authorization_details) === canonicalize([PAYMENT]), `details: ${JSON.stringify(info.body.authorization_details)}`);
    // Time for any ceremony the page might start by itself: none may.
    await page.waitForLoadState('networkidle');
    await sleep(1000);
    check((await page.evaluate(() => window.__credentialsGet)) === 0, 'no navigator.credentials.get before Allow');
    check((await me.credentials())[0].signCount === counterBefore, 'the authenticator has signed nothing yet');
    check(ceremonies.length === 0, `no passkey ceremony on the way to consent: ${ceremonies}`);
    await me.audit('consent-payment');
    stepDone(step);

    step = '(c) Allow → transaction_confirmation_required → the passkey signs the payment → callback';
    const refused = page.waitForResponse((r) => r.url().endsWith(`/auth/oauth/requests/${requestId}/accept`));
    await page.getByRole('button', { name: 'Allow', exact: true }).click();
    const first = await refused;
    const firstBody = await first.json();
    check(
      first.status() === 403 && firstBody.code === 'transaction_confirmation_required' && firstBody.transaction_id === info.body.transaction_id,
      `the first accept wants the request's transaction confirmed: ${first.status()} ${JSON.stringify(firstBody)}`,
    );
    const confirm = page.getByRole('button', { name: 'Confirm with passkey' });
    await confirm.waitFor();
    const txn = page.locator('#txn-payments .payment');
    await txn.locator('[data-field="amount"]', { hasText: '1,234.56' }).waitFor();
    check((await txn.locator('[data-field="creditor"]').textContent()) === 'Merchant A', 'payee in the confirmation');
    check((await txn.locator('[data-field="iban"]').textContent()) === IBAN_GROUPED, 'IBAN in the confirmation');
    check(!(await page.getByRole('button', { name: 'Allow', exact: true }).isVisible()), 'Allow gives way to the confirmation');
    check(await page.getByRole('button', { name: 'Deny', exact: true }).isVisible(), 'Deny stays');
    await sleep(500);
    check((await page.evaluate(() => window.__credentialsGet)) === 0, 'no navigator.credentials.get before the confirm click');
    check((await me.credentials())[0].signCount === counterBefore, 'still nothing signed');
    check(ceremonies.length === 0, `no ceremony before the confirm click: ${ceremonies}`);
    page.off('request', recordCeremony);
    await me.audit('consent-payment-confirm');
    const finished = page.waitForResponse((r) => r.url().endsWith('/webauthn/finish') && r.request().method() === 'POST');
    await confirm.click();
    const proof = await finished;
    check(proof.status() === 200, `finish answered ${proof.status()}`);
    await page.waitForURL((url) => url.origin === merchant.origin && url.pathname === '/cb', { timeout: STEP_TIMEOUT_MS });
    const callback = merchant.lastCallback();
    check(callback.code && !callback.error, `a code, no error: ${JSON.stringify(callback)}`);
    check((await me.credentials())[0].signCount > counterBefore, 'the authenticator signed once');
    const accepts = answers.filter((a) => a.path === `/auth/oauth/requests/${requestId}/accept`).map((a) => a.status);
    check(JSON.stringify(accepts) === '[403,200]', `accept refused, then accepted: ${accepts}`);
    // Read as it arrived: the page has navigated away since.
    const finishAnswer = answers.findLast((a) => a.path.endsWith('/webauthn/finish'));
    const { confirmation } = (await finishAnswer.body) ?? {};
    check(typeof confirmation === 'string', 'the finish answer carries the confirmation');
    const signed = claimsOf(confirmation);
    check(signed.txn === info.body.transaction_id && signed.linking === 'webauthn', `confirmation: ${JSON.stringify(signed)}`);
    stepDone(step);

    step = '(d) the code buys tokens carrying the payment; introspection has its tx_hash';
    const expectedHash = txHash(PAYMENT);
    check(signed.tx_hash === expectedHash, `the confirmation's tx_hash ${signed.tx_hash} is ${expectedHash}`);
    const tokens = await merchant.exchange(callback);
    check(
      canonicalize(tokens.authorization_details) === canonicalize([PAYMENT]),
      `token response authorization_details: ${JSON.stringify(tokens.authorization_details)}`,
    );
    const access = claimsOf(tokens.access_token);
    check(canonicalize(access.authorization_details) === canonicalize([PAYMENT]), `access token details: ${JSON.stringify(access.authorization_details)}`);
    check(claimsOf(tokens.id_token).acr === LOA_2, `SCA: ${claimsOf(tokens.id_token).acr}`);
    const introspected = await merchant.introspect(tokens.access_token);
    check(introspected.active === true && introspected.client_id === CLIENT_ID, `introspection: ${JSON.stringify(introspected)}`);
    check(introspected.tx_hash === expectedHash, `introspected tx_hash ${introspected.tx_hash}, expected ${expectedHash}`);
    check(
      canonicalize(introspected.authorization_details) === canonicalize([PAYMENT]),
      `introspected details: ${JSON.stringify(introspected.authorization_details)}`,
    );
    stepDone(step);

    step = '(e) a second payment request, Deny → access_denied';
    const callbacksBefore = merchant.callbacks.length;
    await page.goto(`${merchant.origin}/start`);
    await me.expectPage('Allow access', '/ui/consent');
    await page.locator('#consent-payments [data-field="creditor"]', { hasText: 'Merchant A' }).waitFor();
    await page.getByRole('button', { name: 'Deny', exact: true }).click();
    await page.waitForURL((url) => url.origin === merchant.origin && url.pathname === '/cb', { timeout: STEP_TIMEOUT_MS });
    check(merchant.callbacks.length === callbacksBefore + 1, 'one more callback');
    const denied = merchant.lastCallback();
    check(denied.error === 'access_denied' && !denied.code, `access_denied: ${JSON.stringify(denied)}`);
    stepDone(step);
  } catch (error) {
    await reportFailure({ backend, step, error, browsers, service });
    throw error;
  } finally {
    for (const browser of browsers) await browser.close().catch(() => {});
    await service.stop();
    await mailbox.close();
    await merchant.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await runOnEachBackend(story);
