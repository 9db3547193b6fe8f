// The FAPI 2.0 Security Profile (docs/FAPI.md) against oauth4webapi, a client library
// certified for it: pushed authorization requests, private_key_jwt, DPoP with the server's
// nonces, `iss` in the authorization response, SCA. Run through .ci/interop.sh, which
// passes INTEROP_BASE_URL and a user of its own for this suite (INTEROP_FAPI_EMAIL): the
// suite enrolls TOTP for it, which the other suites' user must not get.
// The client: `interop-fapi` in ../clients.json, with the test-only key of
// ../private_key_jwt.test-key.json.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as oauth from 'oauth4webapi';
import { Browser, ENV, totp } from './browser.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const FAPI = JSON.parse(readFileSync(join(HERE, '../clients.json'), 'utf8')).find(
  (c) => c.client_id === 'interop-fapi',
);
const TEST_KEY = JSON.parse(readFileSync(join(HERE, '../private_key_jwt.test-key.json'), 'utf8'));
const ISSUER = new URL(ENV.baseUrl);
const REDIRECT = FAPI.redirect_uris[0];
const FAPI_EMAIL = process.env.INTEROP_FAPI_EMAIL;
const T = { timeout: 30_000 };
// http://localhost in CI: the library refuses plain HTTP unless told.
const INSECURE = { [oauth.allowInsecureRequests]: true };

/** A browser whose session has passed SCA: signed in, TOTP enrolled and verified. */
async function scaBrowser() {
  const browser = new Browser();
  await browser.login(FAPI_EMAIL, ENV.password);
  const headers = { 'x-csrf-token': browser.csrf };
  const setup = await browser.request('/auth/mfa/totp/setup', { method: 'POST', json: {}, headers });
  const { secret } = await setup.json();
  assert.equal(setup.status, 200, 'TOTP setup');
  // The first code confirms the enrollment (`totp_enabled`); enrolling proves nothing about
  // this session, so a second code (the next time step: a code is accepted once) steps it up.
  const verify = async (at) => {
    const response = await browser.request('/auth/mfa/totp/verify', {
      method: 'POST',
      json: { code: totp(secret, at) },
      headers,
    });
    return (await response.json()).code;
  };
  assert.equal(await verify(Date.now()), 'totp_enabled');
  assert.equal(await verify(Date.now() + 30_000), 'mfa_verified');
  return browser;
}

/** A token endpoint call, repeated once when the server asks for its DPoP nonce. */
async function withNonceRetry(request, process) {
  try {
    return await process(await request());
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    return process(await request());
  }
}

describe(`oauth4webapi (FAPI 2.0) against the provider (${ENV.deployment})`, () => {
  let as;
  let client;
  let clientAuth;

  before(async () => {
    assert.ok(FAPI_EMAIL, 'INTEROP_FAPI_EMAIL is not set: run this suite through .ci/interop.sh');
    as = await oauth.processDiscoveryResponse(
      ISSUER,
      await oauth.discoveryRequest(ISSUER, { algorithm: 'oidc', ...INSECURE }),
    );
    client = { client_id: FAPI.client_id };
    const { d, x, y, crv, kty } = TEST_KEY;
    const key = await crypto.subtle.importKey(
      'jwk',
      { d, x, y, crv, kty },
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    );
    clientAuth = oauth.PrivateKeyJwt({ key, kid: TEST_KEY.kid });
  });

  test('discovery offers PAR, DPoP and iss in the authorization response', T, () => {
    assert.equal(as.pushed_authorization_request_endpoint, `${ENV.baseUrl}/oauth/par`);
    assert.ok(as.dpop_signing_alg_values_supported.includes('ES256'));
    assert.equal(as.authorization_response_iss_parameter_supported, true);
  });

  test('PAR + private_key_jwt + DPoP: a bound access token, userinfo with a proof, refresh', T, async () => {
    const browser = await scaBrowser();
    const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const pushed = await oauth.processPushedAuthorizationResponse(
      as,
      client,
      await oauth.pushedAuthorizationRequest(
        as,
        client,
        clientAuth,
        {
          response_type: 'code',
          redirect_uri: REDIRECT,
          scope: 'openid email',
          state,
          nonce,
          code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
          code_challenge_method: 'S256',
        },
        { DPoP, ...INSECURE },
      ),
    );
    assert.match(pushed.request_uri, /^urn:ietf:params:oauth:request_uri:/);
    assert.equal(pushed.expires_in, 60);

    const url = new URL(as.authorization_endpoint);
    url.searchParams.set('client_id', client.client_id);
    url.searchParams.set('request_uri', pushed.request_uri);
    const { callback } = await browser.authorize(url);
    // The library checks `iss` (RFC 9207) and `state`.
    const params = oauth.validateAuthResponse(as, client, callback, state);

    const tokens = await withNonceRetry(
      () => oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, REDIRECT, verifier, {
        DPoP,
        ...INSECURE,
      }),
      (response) => oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: nonce }),
    );
    assert.equal(tokens.token_type, 'dpop');
    const claims = oauth.getValidatedIdTokenClaims(tokens);
    assert.equal(claims.acr, 'urn:logicredit:loa:2');

    const info = await oauth.processUserInfoResponse(
      as,
      client,
      claims.sub,
      await oauth.userInfoRequest(as, client, tokens.access_token, { DPoP, ...INSECURE }),
    );
    assert.equal(info.sub, claims.sub);

    // Without its proof the bound token is refused, with a DPoP challenge.
    const bare = await fetch(as.userinfo_endpoint, {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    assert.equal(bare.status, 401);
    assert.match(bare.headers.get('www-authenticate') ?? '', /^DPoP\b.*error="invalid_token"/);

    // Refresh with the proof: rotated on every use (docs/API.md §8, for fapi2 clients too —
    // docs/FAPI.md explains why this is stricter than FAPI 2.0 §5.3.2.1 item 10); the
    // rotated token is refused afterwards.
    const refreshed = await withNonceRetry(
      () => oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, { DPoP, ...INSECURE }),
      (response) => oauth.processRefreshTokenResponse(as, client, response),
    );
    assert.equal(refreshed.token_type, 'dpop');
    assert.ok(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'a new refresh token');
    const reused = await withNonceRetry(
      () => oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, { DPoP, ...INSECURE }),
      (response) => oauth.processRefreshTokenResponse(as, client, response),
    ).then(() => null, (err) => err);
    assert.ok(reused instanceof oauth.ResponseBodyError, `the rotated token is refused: ${reused}`);
    assert.equal(reused.error, 'invalid_grant');
  });

  test('an authorization request that was not pushed is refused without a redirect', T, async () => {
    const url = new URL(as.authorization_endpoint);
    for (const [k, v] of Object.entries({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: REDIRECT,
      code_challenge: await oauth.calculatePKCECodeChallenge(oauth.generateRandomCodeVerifier()),
      code_challenge_method: 'S256',
    })) {
      url.searchParams.set(k, v);
    }
    const response = await fetch(url, { redirect: 'manual' });
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('location'), null);
    assert.equal((await response.json()).error, 'invalid_request');
  });
});
