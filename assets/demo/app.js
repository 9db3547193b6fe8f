// Logicredit Auth passkey demo (development only). No framework, no inline code: the page's
// Content-Security-Policy allows this file, app.css, same-origin fetches and data: images.
// The DOM is only ever built with textContent and element methods (no innerHTML), which
// the policy's `require-trusted-types-for 'script'` enforces.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------
  // State: 'anonymous', 'pending' (password accepted, second factor outstanding) or
  // 'active'; the CSRF token from the latest response that carried one.
  // ---------------------------------------------------------------------------------
  let state = 'anonymous';
  let email = null;
  let csrfToken = null;

  function setState(next, who) {
    state = next;
    if (who !== undefined) email = who;
    const status = $('status');
    if (state === 'active') {
      status.textContent = `Signed in as ${email || 'unknown user'}.`;
    } else if (state === 'pending') {
      status.textContent = 'Password accepted: a second factor is required.';
    } else {
      status.textContent = 'Not signed in.';
      email = null;
      csrfToken = null;
      $('me-output').textContent = '(not signed in)';
      $('sessions').replaceChildren();
      $('passkeys').replaceChildren();
      $('totp-panel').hidden = true;
    }
    if (state !== 'pending') $('mfa').hidden = true;
    document.body.dataset.state = state;
  }

  function readCookie(name) {
    for (const part of document.cookie.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) {
        return decodeURIComponent(part.slice(eq + 1).trim());
      }
    }
    return null;
  }

  // The token from the last JSON answer, else the readable csrf_token cookie, else ask.
  async function currentCsrf() {
    if (csrfToken) return csrfToken;
    const cookie = readCookie('csrf_token');
    if (cookie) return (csrfToken = cookie);
    if (state === 'anonymous') return null;
    const answer = await api('GET', '/auth/csrf');
    return answer.ok ? answer.data.csrf_token : null;
  }

  // ---------------------------------------------------------------------------------
  // The response log
  // ---------------------------------------------------------------------------------
  const MAX_LOG = 40;
  let logSeq = 0;

  function log(title, data, ok) {
    const item = document.createElement('li');
    item.className = ok ? 'ok' : 'error';
    logSeq += 1;
    item.dataset.seq = String(logSeq);
    const heading = document.createElement('p');
    heading.className = 'req';
    heading.textContent = title;
    const body = document.createElement('pre');
    body.textContent = JSON.stringify(data, null, 2);
    item.append(heading, body);
    const list = $('log');
    list.prepend(item);
    while (list.children.length > MAX_LOG) list.lastElementChild.remove();
  }

  // ---------------------------------------------------------------------------------
  // The API: same origin, cookies, JSON bodies, X-CSRF-Token on every write.
  // ---------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (method !== 'GET') {
      const token = await currentCsrf();
      if (token) headers['X-CSRF-Token'] = token;
    }
    let status = 0;
    let data;
    try {
      const response = await fetch(path, init);
      status = response.status;
      data = await response.json().catch(() => ({ code: 'not_json' }));
    } catch (error) {
      data = { code: 'network_error', message: String(error) };
    }
    if (data && typeof data.csrf_token === 'string') csrfToken = data.csrf_token;
    log(`${method} ${path} → ${status || 'failed'}`, data, status >= 200 && status < 300);
    if (status === 401 && data.code === 'not_authenticated' && state !== 'anonymous') {
      setState('anonymous');
    }
    if (status === 401 && data.code === 'mfa_step_up_required') showMfa(data.methods, true);
    return { ok: status >= 200 && status < 300, status, data };
  }

  // A successful sign-in (password, second factor or passkey): show who we are. The
  // status line changes once /auth/me is shown, so the two never disagree.
  async function signedIn(data) {
    const answer = await refreshMe();
    if (!answer.ok) setState('active', data.user && data.user.email);
  }

  async function refreshMe() {
    const answer = await api('GET', '/auth/me');
    $('me-output').textContent = JSON.stringify(answer.data, null, 2);
    if (answer.ok) setState('active', answer.data.user.email);
    return answer;
  }

  function showMfa(methods, stepUp) {
    $('mfa').hidden = false;
    const list = (methods || []).join(', ') || 'none';
    $('mfa-methods').textContent = stepUp
      ? `This action needs a recent second factor (enrolled: ${list}). Confirm below, then retry it.`
      : `Enrolled methods: ${list}.`;
  }

  async function afterFactor(answer) {
    if (!answer.ok) return;
    if (answer.data.code === 'login_ok') {
      $('mfa-code').value = '';
      await signedIn(answer.data);
    } else if (answer.data.code === 'mfa_verified') {
      $('mfa-code').value = '';
      $('mfa').hidden = true;
    }
  }

  // ---------------------------------------------------------------------------------
  // WebAuthn: base64url JSON options in, base64url JSON credential out. The browser's own
  // JSON helpers when it has them (Chrome 129+, Firefox 119+, Safari 18.4+), else by hand.
  // ---------------------------------------------------------------------------------
  function fromB64url(text) {
    const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  const withBinaryIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));

  function creationOptions(options) {
    const json = options.publicKey;
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromB64url(json.challenge),
      user: { ...json.user, id: fromB64url(json.user.id) },
      excludeCredentials: withBinaryIds(json.excludeCredentials),
    };
  }

  function requestOptions(options) {
    const json = options.publicKey;
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromB64url(json.challenge),
      allowCredentials: withBinaryIds(json.allowCredentials),
    };
  }

  function credentialJson(credential) {
    if (typeof credential.toJSON === 'function') return credential.toJSON();
    const r = credential.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (typeof r.getTransports === 'function') response.transports = r.getTransports();
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    return {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response,
    };
  }

  function webauthnAvailable() {
    if (window.PublicKeyCredential && navigator.credentials) return true;
    log('browser', { code: 'webauthn_unavailable', message: 'This browser has no WebAuthn support (or the page is not a secure context).' }, false);
    return false;
  }

  async function browserCeremony(kind, run) {
    try {
      return await run();
    } catch (error) {
      log(`navigator.credentials.${kind}`, { code: 'browser_error', name: error.name, message: error.message }, false);
      return null;
    }
  }

  async function registerPasskey(name) {
    if (!webauthnAvailable()) return;
    const start = await api('POST', '/auth/webauthn/register/start');
    if (!start.ok) return;
    const credential = await browserCeremony('create', async () =>
      navigator.credentials.create({ publicKey: creationOptions(start.data.options) }));
    if (!credential) return;
    const body = { ceremony_id: start.data.ceremony_id, credential: credentialJson(credential) };
    if (name) body.name = name;
    const finish = await api('POST', '/auth/webauthn/register/finish', body);
    if (finish.ok) {
      $('passkey-name').value = '';
      await listPasskeys();
    }
  }

  // With no session: passwordless (discoverable) sign-in. With a pending or active
  // session: the second factor, or step-up.
  async function passkeyAssertion() {
    if (!webauthnAvailable()) return;
    const start = await api('POST', '/auth/webauthn/login/start', {});
    if (!start.ok) return;
    const credential = await browserCeremony('get', async () =>
      navigator.credentials.get({ publicKey: requestOptions(start.data.options) }));
    if (!credential) return;
    await afterFactor(await api('POST', '/auth/webauthn/login/finish', {
      ceremony_id: start.data.ceremony_id,
      credential: credentialJson(credential),
    }));
  }

  // ---------------------------------------------------------------------------------
  // Lists with per-item buttons
  // ---------------------------------------------------------------------------------
  function item(text, buttonLabel, onClick) {
    const li = document.createElement('li');
    const span = document.createElement('span');
    span.textContent = text;
    li.append(span);
    if (buttonLabel) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = buttonLabel;
      button.addEventListener('click', onClick);
      li.append(' ', button);
    }
    return li;
  }

  async function listSessions() {
    const answer = await api('GET', '/auth/sessions');
    const list = $('sessions');
    list.replaceChildren();
    if (!answer.ok) return;
    for (const s of answer.data.sessions) {
      const label = `${s.current ? '(this session) ' : ''}${s.user_agent || 'unknown agent'} from ${s.ip}, `
        + `since ${s.created_at}, last seen ${s.last_seen_at}`;
      list.append(item(label, 'Revoke', async () => {
        const revoked = await api('DELETE', `/auth/sessions/${encodeURIComponent(s.id)}`);
        if (revoked.ok && s.current) setState('anonymous');
        else if (revoked.ok) await listSessions();
      }));
    }
  }

  async function listPasskeys() {
    const answer = await api('GET', '/auth/webauthn/credentials');
    const list = $('passkeys');
    list.replaceChildren();
    if (!answer.ok) return;
    for (const c of answer.data.credentials) {
      const label = `${c.name}, added ${c.created_at}, last used ${c.last_used_at || 'never'}`;
      list.append(item(label, 'Delete', async () => {
        const deleted = await api('DELETE', `/auth/webauthn/credentials/${encodeURIComponent(c.id)}`);
        if (deleted.ok) await listPasskeys();
      }));
    }
  }

  // ---------------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------------
  function onSubmit(id, handler) {
    $(id).addEventListener('submit', (event) => {
      event.preventDefault();
      handler(new FormData(event.currentTarget));
    });
  }

  onSubmit('register-form', async (form) => {
    const answer = await api('POST', '/auth/register', {
      email: form.get('email'),
      password: form.get('password'),
    });
    if (answer.ok) {
      $('login-email').value = form.get('email');
      $('verify-token').focus();
    }
  });

  onSubmit('verify-form', async (form) => {
    const answer = await api('POST', '/auth/verify-email', { token: String(form.get('token')).trim() });
    if (answer.ok) {
      $('verify-token').value = '';
      $('login-password').focus();
    }
  });

  onSubmit('login-form', async (form) => {
    csrfToken = null;
    const answer = await api('POST', '/auth/login', {
      email: form.get('email'),
      password: form.get('password'),
    });
    if (!answer.ok) return;
    $('login-password').value = '';
    if (answer.data.code === 'mfa_required') {
      setState('pending', String(form.get('email')));
      showMfa(answer.data.methods, false);
      $('mfa-code').focus();
    } else {
      await signedIn(answer.data);
    }
  });

  onSubmit('mfa-code-form', async (form) => {
    await afterFactor(await api('POST', '/auth/mfa/totp/verify', { code: String(form.get('code')).trim() }));
  });

  $('mfa-recovery').addEventListener('click', async () => {
    await afterFactor(await api('POST', '/auth/mfa/recovery/verify', { code: $('mfa-code').value.trim() }));
  });

  $('mfa-passkey').addEventListener('click', passkeyAssertion);
  $('passkey-login').addEventListener('click', passkeyAssertion);

  $('me').addEventListener('click', refreshMe);

  $('logout').addEventListener('click', async () => {
    const answer = await api('POST', '/auth/logout');
    if (answer.ok) setState('anonymous');
  });

  $('totp-setup').addEventListener('click', async () => {
    const answer = await api('POST', '/auth/mfa/totp/setup');
    if (!answer.ok) return;
    // The SVG is shown as an image: it cannot run script there, and img-src allows data:.
    $('totp-qr').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(answer.data.qr_svg)}`;
    $('totp-secret').textContent = answer.data.secret;
    $('totp-panel').hidden = false;
    $('totp-code').focus();
  });

  onSubmit('totp-form', async (form) => {
    const answer = await api('POST', '/auth/mfa/totp/verify', { code: String(form.get('code')).trim() });
    if (answer.ok) {
      $('totp-code').value = '';
      $('totp-panel').hidden = true;
      await refreshMe();
    }
  });

  onSubmit('passkey-form', (form) => registerPasskey(String(form.get('name') || '').trim()));
  $('passkeys-list').addEventListener('click', listPasskeys);

  $('sessions-list').addEventListener('click', listSessions);
  $('sessions-revoke-others').addEventListener('click', async () => {
    const answer = await api('POST', '/auth/sessions/revoke-others');
    if (answer.ok) await listSessions();
  });

  $('log-clear').addEventListener('click', () => $('log').replaceChildren());

  // An existing session (a reload) is picked up quietly.
  (async () => {
    try {
      const response = await fetch('/auth/me', { credentials: 'same-origin', cache: 'no-store' });
      const data = await response.json();
      if (response.ok) {
        setState('active', data.user.email);
        $('me-output').textContent = JSON.stringify(data, null, 2);
      } else {
        setState('anonymous');
      }
    } catch {
      setState('anonymous');
    }
    document.body.dataset.ready = 'true';
  })();
})();
