"""Schemathesis hooks for the authenticated contract run of .ci/schemathesis.sh.

Every generated request is sent as an admin with fresh MFA: the hook logs in (password,
then a TOTP code), keeps the session cookie and adds it with `X-CSRF-Token` to each call,
so the session, MFA and admin routes answer more than 401/403.

Generated requests can end that session (the stateful phase revokes session ids it read
from GET /auth/sessions, step-up expires): when an answer says so (`401
not_authenticated`, `mfa_required` or `mfa_step_up_required` for the session the call
carried), the next call logs in again, with a TOTP code for an unused time step or, while
none is free, one of the recovery codes the hook keeps (updated when a generated request
regenerates them).

Run as a script (`python schemathesis_hooks.py enroll`) before schemathesis: it logs the
admin in and enrolls TOTP through the API, leaving the secret in LCAUTH_STATE_FILE.

Environment: LCAUTH_BASE_URL, LCAUTH_ADMIN_EMAIL, LCAUTH_ADMIN_PASSWORD, LCAUTH_STATE_FILE.
The cookie is `session`: the run sets COOKIE_SECURE=false (docs/API.md §2).
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import threading
import time

import requests

SESSION_COOKIE = "session"
CSRF_HEADER = "X-CSRF-Token"
STEP_SECONDS = 30


def totp(secret: str, step: int) -> str:
    """RFC 6238 as the service uses it: SHA-1, 6 digits, 30-second steps."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def fail(what: str, response: requests.Response) -> None:
    raise RuntimeError(f"{what}: {response.status_code} {response.text[:500]}")


class Admin:
    """The run's admin: one session shared by the workers, replaced when it stops working."""

    def __init__(self) -> None:
        self.base = os.environ["LCAUTH_BASE_URL"].rstrip("/")
        self.email = os.environ["LCAUTH_ADMIN_EMAIL"]
        self.password = os.environ["LCAUTH_ADMIN_PASSWORD"]
        self.state_file = os.environ["LCAUTH_STATE_FILE"]
        self.lock = threading.Lock()
        self.token: str | None = None
        self.csrf: str | None = None

    def _post(self, path: str, body, token: str | None = None, csrf: str | None = None):
        headers = {CSRF_HEADER: csrf} if csrf else {}
        cookies = {SESSION_COOKIE: token} if token else {}
        return requests.post(f"{self.base}{path}", json=body, headers=headers, cookies=cookies, timeout=30)

    def _state(self) -> dict:
        with open(self.state_file) as f:
            return json.load(f)

    def _save(self, state: dict) -> None:
        with open(self.state_file, "w") as f:
            json.dump(state, f)

    def _second_factor(self) -> tuple[str, str]:
        """The route and code for the next MFA login: a TOTP code for a step no earlier
        login used (the service refuses a replayed step and accepts one step of skew either
        way), else a recovery code while some are left, else wait for the next step."""
        state = self._state()
        while True:
            now = int(time.time()) // STEP_SECONDS
            step = max(state["last_step"] + 1, now - 1)
            if step <= now + 1:
                state["last_step"] = step
                self._save(state)
                return "/auth/mfa/totp/verify", totp(state["secret"], step)
            if state["recovery_codes"]:
                code = state["recovery_codes"].pop()
                self._save(state)
                return "/auth/mfa/recovery/verify", code
            time.sleep(1)

    def replace_recovery_codes(self, codes: list[str]) -> None:
        """A generated regenerate call voided the codes the hook kept: keep the new ones."""
        with self.lock:
            state = self._state()
            state["recovery_codes"] = codes
            self._save(state)

    def enroll(self) -> None:
        """A fresh password-only login may start the first factor without a password proof."""
        login = self._post("/auth/login", {"email": self.email, "password": self.password})
        if login.status_code != 200 or login.json().get("code") != "login_ok":
            fail("login before enrollment", login)
        token, csrf = login.cookies[SESSION_COOKIE], login.json()["csrf_token"]
        setup = self._post("/auth/mfa/totp/setup", None, token, csrf)
        if setup.status_code != 200:
            fail("TOTP setup", setup)
        secret = setup.json()["secret"]
        step = int(time.time()) // STEP_SECONDS
        verify = self._post("/auth/mfa/totp/verify", {"code": totp(secret, step)}, token, csrf)
        if verify.status_code != 200 or verify.json().get("code") != "totp_enabled":
            fail("TOTP enrollment", verify)
        self._save({"secret": secret, "last_step": step, "recovery_codes": verify.json()["recovery_codes"]})

    def login(self) -> None:
        login = self._post("/auth/login", {"email": self.email, "password": self.password})
        if login.status_code != 200 or login.json().get("code") != "mfa_required":
            fail("login", login)
        pending, csrf = login.cookies[SESSION_COOKIE], login.json()["csrf_token"]
        route, code = self._second_factor()
        verify = self._post(route, {"code": code}, pending, csrf)
        if verify.status_code != 200 or verify.json().get("code") != "login_ok":
            fail("MFA login", verify)
        print(f"schemathesis_hooks: admin logged in with {route}", file=sys.stderr)
        # Completing MFA rotates the session: the new token and its CSRF token.
        self.token, self.csrf = verify.cookies[SESSION_COOKIE], verify.json()["csrf_token"]

    def credentials(self) -> tuple[str, str]:
        with self.lock:
            if self.token is None:
                self.login()
            return self.token, self.csrf

    def invalidate(self, token: str) -> None:
        with self.lock:
            if self.token == token:
                self.token = self.csrf = None


if __name__ == "__main__":
    if sys.argv[1:] != ["enroll"]:
        sys.exit("usage: schemathesis_hooks.py enroll")
    Admin().enroll()
    sys.exit(0)

import schemathesis  # noqa: E402 (only the hook half needs it)

ADMIN = Admin()
# The answers that mean the session a call carried can no longer act as the admin.
SESSION_LOST = {"not_authenticated", "mfa_required", "mfa_step_up_required"}


@schemathesis.hook
def before_call(context, case, kwargs):
    token, csrf = ADMIN.credentials()
    headers = dict(case.headers or {})
    headers["Cookie"] = f"{SESSION_COOKIE}={token}"
    headers[CSRF_HEADER] = csrf
    case.headers = headers


@schemathesis.hook
def after_call(context, case, response):
    try:
        body = json.loads(response.content)
        code = body.get("code")
    except (ValueError, AttributeError):
        return
    if code == "recovery_codes_regenerated":
        ADMIN.replace_recovery_codes(body["recovery_codes"])
    if response.status_code == 401 and code in SESSION_LOST:
        cookie = (case.headers or {}).get("Cookie", "")
        ADMIN.invalidate(cookie.removeprefix(f"{SESSION_COOKIE}="))
