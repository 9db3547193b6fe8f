// The FAPI 2.0 Security Profile and PSD2 dynamic linking against oauth4webapi — a relying-
// party library certified for FAPI 2.0 that nobody here wrote — on the real binary.
// A third-party provider (client `interop-fapi`, profile fapi2) initiates a payment:
//   PAR (RFC 9126) with private_key_jwt (RFC 7523) and a DPoP proof (RFC 9449), carrying
//   authorization_details of type payment_initiation (RFC 9396) → the user signs in with
//   two factors and confirms exactly that payment (API.md §9: a transaction whose tx_hash is
//   the RFC 8785 hash of the details) → code with `iss` (RFC 9207) → DPoP-bound tokens with
//   the nonce the server asks for → userinfo and a resource server check with DPoP.
// RFC 8785 is recomputed with `canonicalize` (by an author of the RFC), TOTP codes come
// from `otpauth`, signatures are checked with `jose`.
// Run through .ci/interop.sh (INTEROP_BASE_URL, INTEROP_PAYER_EMAIL, INTEROP_PASSWORD).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import canonicalize from 'canonicalize';
import * as OTPAuth from 'otpauth';
import { Browser, ENV } from './browser.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENTS = Object.fromEntries(
  JSON.parse(readFileSync(join(HERE, '../clients.json'), 'utf8')).map((c) => [c.client_id, c]),
);
const FAPI = CLIENTS['interop-fapi'];
const FAPI_KEY = JSON.parse(readFileSync(join(HERE, '../private_key_jwt.test-key.json'), 'utf8'));
const ISSUER = new URL(ENV.baseUrl);
const SCA_EMAIL = process.env.INTEROP_PAYER_EMAIL || 'interop-payer@example.com';
const REDIRECT_URI = FAPI.redirect_uris[0];
const T = { timeout: 90_000 };
const INSECURE = { [oauth.allowInsecureRequests]: true };

const PAYMENT = [{
  type: 'payment_initiation',
  instructedAmount: { currency: 'EUR', amount: '123.45' },
  creditorName: 'Merchant A',
  creditorAccount: { iban: 'DE89370400440532013000' },
  remittanceInformationUnstructured: 'Invoice 2026-117',
}];

async function importKey(jwk) {
  const { d, x, y, crv, kty } = jwk;
  return crypto.subtle.importKey('jwk', { d, x, y, crv, kty }, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

/** base64url(SHA-256(RFC 8785 canonical JSON)): API.md §9's tx_hash, computed independently. */
function txHash(details) {
  return createHash('sha256').update(canonicalize(details), 'utf8').digest('base64url');
}

/** Runs `call`, and once more when the server answers use_dpop_nonce (the handle keeps the nonce). */
async function withNonceRetry(call) {
  try {
    return await call();
  } catch (err) {
    if (oauth.isDPoPNonceError(err)) return call();
    throw err;
  }
}

/** The OAuth error a promise ended with, or a failed assertion when it succeeded. */
async function oauthError(promise) {
  try {
    await promise;
  } catch (err) {
    if (err instanceof oauth.ResponseBodyError) return { status: err.status, error: err.error };
    if (err instanceof oauth.WWWAuthenticateChallengeError) {
      return { status: err.response?.status, error: err.cause?.[0]?.parameters?.error, challenge: err.cause };
    }
    if (err instanceof oauth.AuthorizationResponseError) return { error: err.error };
    throw err;
  }
  return assert.fail('expected an OAuth error; the call succeeded');
}

/** The account holder: password, TOTP enrolled by this suite, recovery codes for step-up. */
class AccountHolder {
  constructor() {
    this.browser = new Browser();
    this.totp = null;
    this.recoveryCodes = [];
    this.lastStep = -1;
  }

  async enroll() {
    const login = await this.browser.login(SCA_EMAIL, ENV.password);
    assert.equal(login.code, 'login_ok', 'the SCA user starts without a second factor');
    const setup = await this.json('/auth/mfa/totp/setup', {});
    assert.equal(setup.status, 200, JSON.stringify(setup.body));
    this.totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(setup.body.secret), digits: 6, period: 30, algorithm: 'SHA1' });
    const verify = await this.json('/auth/mfa/totp/verify', { code: await this.freshCode() });
    assert.equal(verify.body.code, 'totp_enabled', JSON.stringify(verify.body));
    this.recoveryCodes = verify.body.recovery_codes;
  }

  /** A TOTP code of a step not used yet (a step is accepted at most once per user). */
  async freshCode() {
    let step = Math.floor(Date.now() / 30_000);
    if (step <= this.lastStep) {
      await new Promise((r) => setTimeout(r, (this.lastStep + 1) * 30_000 - Date.now() + 200));
      step = Math.floor(Date.now() / 30_000);
    }
    this.lastStep = step;
    return this.totp.generate();
  }

  /** Step-up to two factors (loa:2) with a one-time recovery code. */
  async stepUp() {
    const response = await this.json('/auth/mfa/recovery/verify', { code: this.recoveryCodes.shift() });
    assert.equal(response.body.code, 'mfa_verified', JSON.stringify(response.body));
  }

  async json(path, body, method = 'POST') {
    const response = await this.browser.request(path, {
      method,
      json: body,
      headers: this.browser.csrf ? { 'x-csrf-token': this.browser.csrf } : {},
    });
    return { status: response.status, body: await response.json() };
  }
}

describe(`FAPI 2.0 + payment initiation with oauth4webapi (${ENV.deployment})`, () => {
  let as;
  let clientAuth;
  const client = { client_id: FAPI.client_id, token_endpoint_auth_method: 'private_key_jwt' };
  let holder;
  let jwks;

  before(async () => {
    as = await oauth.processDiscoveryResponse(ISSUER, await oauth.discoveryRequest(ISSUER, INSECURE));
    clientAuth = oauth.PrivateKeyJwt({ key: await importKey(FAPI_KEY), kid: FAPI_KEY.kid });
    jwks = jose.createRemoteJWKSet(new URL(as.jwks_uri));
    holder = new AccountHolder();
    await holder.enroll();
  });

  /** PAR with private_key_jwt and DPoP; returns what the rest of the flow needs. */
  async function pushPayment(dpop, details = PAYMENT) {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const params = {
      response_type: 'code',
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      authorization_details: JSON.stringify(details),
    };
    const par = await withNonceRetry(async () => oauth.processPushedAuthorizationResponse(as, client,
      await oauth.pushedAuthorizationRequest(as, client, clientAuth, params, { DPoP: dpop, ...INSECURE })));
    return { par, verifier, state, nonce };
  }

  /** The front channel with only client_id + request_uri (FAPI 2.0: everything else went by PAR). */
  function authorizationUrl(requestUri) {
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set('client_id', client.client_id);
    url.searchParams.set('request_uri', requestUri);
    return url;
  }

  test('discovery advertises PAR, DPoP, RAR and iss in the authorization response', T, () => {
    assert.ok(as.pushed_authorization_request_endpoint?.startsWith(ISSUER.href.replace(/\/$/, '')));
    assert.ok(as.dpop_signing_alg_values_supported?.includes('ES256'));
    assert.ok(as.authorization_details_types_supported?.includes('payment_initiation'));
    assert.equal(as.authorization_response_iss_parameter_supported, true);
    assert.ok(as.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
    assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
  });

  test('payment initiation: PAR + private_key_jwt + DPoP + RAR, SCA dynamically linked, DPoP-bound tokens', T, async () => {
    const dpopKeys = await oauth.generateKeyPair('ES256');
    const dpop = oauth.DPoP(client, dpopKeys);
    const { par, verifier, state, nonce } = await pushPayment(dpop);
    assert.match(par.request_uri, /^urn:ietf:params:oauth:request_uri:/);
    assert.ok(par.expires_in > 0 && par.expires_in <= 60, `request_uri lives at most 60 s: ${par.expires_in}`);

    // The browser: a cross-site navigation to the authorization endpoint → the login UI.
    const first = await fetch(authorizationUrl(par.request_uri), { redirect: 'manual' });
    assert.equal(first.status, 303, await first.text());
    const requestId = new URL(first.headers.get('location'), ISSUER).searchParams.get('request');
    assert.ok(requestId, 'the provider asked for an interaction');
    const b = holder.browser;
    let info = await b.requestInfo(requestId);
    assert.equal(info.client.client_id, client.client_id);
    assert.deepEqual(info.authorization_details.map((d) => d.instructedAmount), [PAYMENT[0].instructedAmount],
      'the consent step is told the amount and currency');
    // The session holder signs in again for two factors (fapi2 needs loa:2).
    await holder.stepUp();
    info = await b.requestInfo(requestId);
    assert.equal(info.login_required, false);
    assert.equal(info.step_up_required, false, 'the step-up satisfied loa:2');
    assert.ok(info.transaction_id, 'a §9 transaction for exactly these details');

    // A fresh step-up that is not bound to the payment does not count.
    const early = await holder.json(`/auth/oauth/requests/${requestId}/accept`, {});
    assert.equal(early.status, 403, JSON.stringify(early.body));
    assert.equal(early.body.code, 'transaction_confirmation_required');
    assert.equal(early.body.transaction_id, info.transaction_id);

    // The transaction the user confirms is the one the TPP asked for, byte for byte.
    const tx = await holder.json(`/auth/transactions/${info.transaction_id}`, undefined, 'GET');
    assert.equal(tx.status, 200, JSON.stringify(tx.body));
    const expectedHash = txHash(PAYMENT.length === 1 ? PAYMENT[0] : PAYMENT);
    assert.equal(tx.body.tx_hash, expectedHash, 'tx_hash = base64url(SHA-256(RFC 8785(details)))');
    assert.ok(tx.body.methods.includes('totp'));
    const confirmed = await holder.json(`/auth/transactions/${info.transaction_id}/totp`, { code: await holder.freshCode() });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    assert.equal(confirmed.body.code, 'transaction_confirmed');
    const proof = await jose.jwtVerify(confirmed.body.confirmation, jwks, {
      issuer: as.issuer,
      typ: 'txn-confirmation+jwt',
    });
    assert.equal(proof.payload.tx_hash, expectedHash);
    assert.equal(proof.payload.linking, 'server', 'a TOTP confirmation says the server did the linking');
    assert.equal(proof.payload.txn, info.transaction_id);
    assert.ok(proof.payload.exp - proof.payload.iat <= 300);

    const accepted = await holder.json(`/auth/oauth/requests/${requestId}/accept`, {});
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    const callback = new URL(accepted.body.redirect_to);
    assert.equal(callback.searchParams.get('iss'), as.issuer, 'RFC 9207 iss');
    const params = oauth.validateAuthResponse(as, client, callback, state);

    const tokens = await withNonceRetry(async () => oauth.processAuthorizationCodeResponse(as, client,
      await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, REDIRECT_URI, verifier, { DPoP: dpop, ...INSECURE }),
      { expectedNonce: nonce, requireIdToken: true }));
    assert.equal(tokens.token_type, 'dpop', 'a DPoP-bound access token');
    assert.deepEqual(tokens.authorization_details?.map((d) => d.type), ['payment_initiation']);
    assert.equal(tokens.authorization_details[0].instructedAmount.amount, '123.45');
    const idToken = oauth.getValidatedIdTokenClaims(tokens);
    assert.equal(idToken.acr, 'urn:logicredit:loa:2', 'fapi2 always gets loa:2');
    assert.ok(idToken.amr.includes('mfa'), `amr ${idToken.amr}`);

    // The access token: RFC 9068, cnf.jkt = the DPoP key, the payment inside.
    const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKeys.publicKey));
    const { payload: at } = await jose.jwtVerify(tokens.access_token, jwks, { issuer: as.issuer, typ: 'at+jwt' });
    assert.equal(at.cnf?.jkt, jkt);
    assert.equal(at.authorization_details?.[0]?.creditorAccount?.iban, PAYMENT[0].creditorAccount.iban);

    // A resource server (oauth4webapi's RFC 9068 + RFC 9449 validator) accepts the token
    // with its proof; the proof is made by the library's own protectedResourceRequest.
    const resource = new URL('/payments', ISSUER);
    let captured;
    await oauth.protectedResourceRequest(tokens.access_token, 'POST', resource, new Headers(), null, {
      DPoP: dpop,
      ...INSECURE,
      [oauth.customFetch]: async (url, init) => {
        captured = new Request(url, init);
        return new Response(null, { status: 204 });
      },
    });
    const validated = await oauth.validateJwtAccessToken(as, captured, at.aud, { requireDPoP: true, ...INSECURE });
    assert.equal(validated.cnf.jkt, jkt);

    // userinfo needs the proof too; the library sends it.
    const userinfo = await withNonceRetry(async () => oauth.processUserInfoResponse(as, client, idToken.sub,
      await oauth.userInfoRequest(as, client, tokens.access_token, { DPoP: dpop, ...INSECURE })));
    assert.equal(userinfo.sub, idToken.sub);

    // The same token as a plain Bearer token (no proof) is refused.
    const bearer = await fetch(as.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(bearer.status, 401);

    // Introspection: the confirmed tx_hash is recorded with the grant.
    const introspection = await oauth.processIntrospectionResponse(as, client,
      await oauth.introspectionRequest(as, client, clientAuth, tokens.access_token, INSECURE));
    assert.equal(introspection.active, true);
    assert.equal(introspection.tx_hash, expectedHash);
    assert.equal(introspection.cnf?.jkt, jkt);
    assert.equal(introspection.authorization_details?.[0]?.creditorName, 'Merchant A');
  });

  test('the authorization endpoint without PAR gives no code (fapi2 requires PAR)', T, async () => {
    const url = new URL(as.authorization_endpoint);
    for (const [k, v] of Object.entries({
      client_id: client.client_id, response_type: 'code', redirect_uri: REDIRECT_URI, scope: 'openid',
      code_challenge: await oauth.calculatePKCECodeChallenge(oauth.generateRandomCodeVerifier()),
      code_challenge_method: 'S256',
    })) url.searchParams.set(k, v);
    const response = await fetch(url, { redirect: 'manual' });
    const location = response.headers.get('location') ?? '';
    assert.ok(!location.includes('request='), `no interaction was started: ${response.status} ${location}`);
    if (location) assert.equal(new URL(location).searchParams.get('error'), 'invalid_request');
    else assert.equal(response.status, 400);
  });

  test('a request_uri works once', T, async () => {
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    const { par } = await pushPayment(dpop);
    const first = await fetch(authorizationUrl(par.request_uri), { redirect: 'manual' });
    assert.equal(first.status, 303);
    const again = await fetch(authorizationUrl(par.request_uri), { redirect: 'manual' });
    assert.equal(again.status, 400, 'a reused request_uri: 400 without a redirect');
  });

  test('a token request without the DPoP proof is refused for a fapi2 client', T, async () => {
    // Any code will do: the missing proof is refused before the code is looked at, or the
    // code is unknown — neither yields tokens.
    const params = oauth.validateAuthResponse(as, client,
      new URLSearchParams({ code: 'x'.repeat(43), iss: as.issuer }), oauth.skipStateCheck);
    const refused = await oauthError((async () => oauth.processAuthorizationCodeResponse(as, client,
      await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, REDIRECT_URI, oauth.generateRandomCodeVerifier(), INSECURE)))());
    assert.ok(['invalid_dpop_proof', 'invalid_request', 'invalid_grant'].includes(refused.error), JSON.stringify(refused));
  });

  test('a payment the client is not registered for, or with a bad IBAN, is refused at PAR', T, async () => {
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    const badIban = structuredClone(PAYMENT);
    badIban[0].creditorAccount.iban = 'DE89370400440532013001';
    const refused = await oauthError(pushPayment(dpop, badIban));
    assert.equal(refused.error, 'invalid_authorization_details');
    const badAmount = structuredClone(PAYMENT);
    badAmount[0].instructedAmount.amount = '1.234';
    assert.equal((await oauthError(pushPayment(dpop, badAmount))).error, 'invalid_authorization_details');
    const other = [{ type: 'account_information' }];
    assert.equal((await oauthError(pushPayment(dpop, other))).error, 'invalid_authorization_details');
  });
});
