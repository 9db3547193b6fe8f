// The browser's part of an authorization: what the hosted login page (or any UI) does,
// done with plain HTTP and a cookie jar. A relying-party library builds the authorization
// URL and consumes the callback URL; in between, this is the person and their browser:
//   - the authorization URL is opened as a cross-site navigation from the relying party:
//     the SameSite=Strict session cookie is NOT sent (API.md §8), so the provider answers
//     303 to LOGIN_UI_URL?request=<id>;
//   - the login page (same site) asks GET /auth/oauth/requests/{id}, signs in with
//     POST /auth/login when login_required, then POST …/accept with X-CSRF-Token;
//   - redirect_to is the callback URL (code, state, iss) handed back to the library.
// The jar keeps cookies by name and sends them all back: the session cookie is
// `__Host-session` with `Secure`, which a real browser also sends to http://localhost (a
// secure context); Node's fetch has no jar, so this one does it by hand.

import * as OTPAuth from 'otpauth';

/** What an authenticator app shows for `base32Secret` at `at` (RFC 6238: SHA-1, 6 digits, 30 s). */
export function totp(base32Secret, at = Date.now()) {
  const generator = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(base32Secret), digits: 6, period: 30, algorithm: 'SHA1' });
  return generator.generate({ timestamp: at });
}

export const ENV = {
  baseUrl: required('INTEROP_BASE_URL'),
  email: required('INTEROP_EMAIL'),
  password: required('INTEROP_PASSWORD'),
  deployment: process.env.INTEROP_DEPLOYMENT || 'unnamed',
};

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this suite through .ci/interop.sh`);
  }
  return value;
}

export class Browser {
  constructor(baseUrl = ENV.baseUrl) {
    this.baseUrl = baseUrl;
    this.cookies = new Map();
    this.csrf = null;
  }

  cookieHeader() {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  remember(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a))
        || attributes.some((a) => /^\s*expires\s*=/i.test(a) && Date.parse(a.split('=')[1]) < Date.now());
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
      if (name === 'csrf_token' && !expired) this.csrf = value;
    }
  }

  /** A same-site request: cookies go along, redirects are not followed. */
  async request(pathOrUrl, { method = 'GET', json, headers = {}, withCookies = true } = {}) {
    const url = new URL(pathOrUrl, this.baseUrl);
    const h = new Headers(headers);
    if (withCookies && this.cookies.size) h.set('cookie', this.cookieHeader());
    let body;
    if (json !== undefined) {
      h.set('content-type', 'application/json');
      body = JSON.stringify(json);
    }
    if (method !== 'GET' && withCookies) {
      // What a browser adds to a same-origin fetch from the login page.
      h.set('origin', new URL(this.baseUrl).origin);
      h.set('sec-fetch-site', 'same-origin');
    }
    const response = await fetch(url, { method, headers: h, body, redirect: 'manual' });
    this.remember(response);
    return response;
  }

  async login(email = ENV.email, password = ENV.password) {
    const response = await this.request('/auth/login', { method: 'POST', json: { email, password } });
    const body = await response.json();
    if (response.status !== 200 || body.code !== 'login_ok') {
      throw new Error(`login: ${response.status} ${JSON.stringify(body)}`);
    }
    this.csrf = body.csrf_token;
    return body;
  }

  /**
   * Opens `authorizationUrl` as a cross-site navigation (no cookies) and plays the login
   * page until the provider hands back the relying party's callback URL. Signs in first
   * when the request says login_required. Returns {callback: URL, info} where info is the
   * interaction request's JSON as first read, before any login (or null when the provider
   * redirected straight back).
   */
  async authorize(authorizationUrl, { accept = true } = {}) {
    const first = await fetch(authorizationUrl, { redirect: 'manual' });
    if (first.status !== 303 && first.status !== 302) {
      throw new Error(`authorize: expected a redirect, got ${first.status} ${await first.text()}`);
    }
    const location = new URL(first.headers.get('location'), authorizationUrl);
    const requestId = location.searchParams.get('request');
    if (!requestId) return { callback: location, info: null, status: first.status };
    // `info` is what the login page is told first, before anyone signs in.
    const info = await this.requestInfo(requestId);
    if (info.redirect_to) return { callback: new URL(info.redirect_to), info, status: first.status };
    // Accepting needs a session; rejecting does not (the person just says no).
    if (info.login_required && accept) {
      await this.login();
      const after = await this.requestInfo(requestId);
      if (after.login_required) {
        throw new Error(`still login_required after a fresh login: ${JSON.stringify(after)}`);
      }
    }
    const verb = accept ? 'accept' : 'reject';
    const response = await this.request(`/auth/oauth/requests/${encodeURIComponent(requestId)}/${verb}`, {
      method: 'POST',
      json: {},
      // accept needs the session and its CSRF token; reject needs neither, but a page
      // that has them sends them anyway.
      headers: this.csrf ? { 'x-csrf-token': this.csrf } : {},
    });
    const body = await response.json();
    if (response.status !== 200 || !body.redirect_to) {
      throw new Error(`${verb}: ${response.status} ${JSON.stringify(body)}`);
    }
    return { callback: new URL(body.redirect_to), info, loginUi: location, status: first.status };
  }

  async requestInfo(requestId) {
    const response = await this.request(`/auth/oauth/requests/${encodeURIComponent(requestId)}`);
    const body = await response.json();
    if (response.status !== 200 || body.code !== 'ok') {
      throw new Error(`GET /auth/oauth/requests/${requestId}: ${response.status} ${JSON.stringify(body)}`);
    }
    return body;
  }
}
