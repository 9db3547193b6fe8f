"""Fixtures for the authlib suite: the running provider, its metadata, the clients, and a
browser stand-in for the login page.

Run through .ci/interop.sh, which starts the service (once per deployment) and passes
INTEROP_BASE_URL (= the issuer), INTEROP_EMAIL, INTEROP_PASSWORD, INTEROP_DEPLOYMENT.
"""

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

# The provider is served over http://localhost in CI; authlib refuses plain HTTP otherwise.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent


def _required(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run this suite through .ci/interop.sh", returncode=2)
    return value


BASE_URL = _required("INTEROP_BASE_URL")
EMAIL = _required("INTEROP_EMAIL")
PASSWORD = _required("INTEROP_PASSWORD")
CLIENTS = {c["client_id"]: c for c in json.loads((INTEROP / "clients.json").read_text())}
TEST_KEY = json.loads((INTEROP / "private_key_jwt.test-key.json").read_text())
TIMEOUT = 15


def pytest_report_header(config):
    return f"provider: {BASE_URL} ({os.environ.get('INTEROP_DEPLOYMENT', 'unnamed')})"


@pytest.fixture(scope="session")
def issuer():
    return BASE_URL


@pytest.fixture(scope="session")
def metadata():
    response = requests.get(f"{BASE_URL}/.well-known/openid-configuration", timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="session")
def jwks(metadata):
    response = requests.get(metadata["jwks_uri"], timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="session")
def clients():
    return CLIENTS


def query(url):
    """The query of a URL as a dict of single values."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class Browser:
    """What the login page does, with plain HTTP and a cookie jar kept by hand.

    The authorization URL is opened as a cross-site navigation (the SameSite=Strict session
    cookie is not sent), so the provider answers 303 to LOGIN_UI_URL?request=<id>; the page
    then reads the request, signs in when login_required and accepts with X-CSRF-Token.
    requests' own jar would not send the `Secure` session cookie over http://localhost
    (a browser does: it is a secure context), hence the hand-kept one.
    """

    def __init__(self, base_url=BASE_URL):
        self.base_url = base_url
        self.cookies = {}
        self.csrf = None
        self.http = requests.Session()

    def _remember(self, response):
        for line in response.raw.headers.getlist("Set-Cookie"):
            pair, *attributes = line.split(";")
            name, _, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            expired = any(a.strip().lower() == "max-age=0" for a in attributes)
            if expired or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
                if name == "csrf_token":
                    self.csrf = value

    def request(self, method, path, json_body=None, headers=None):
        url = urljoin(self.base_url, path)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method != "GET":
            h["Origin"] = self.base_url
            h["Sec-Fetch-Site"] = "same-origin"
        response = self.http.request(
            method, url, json=json_body, headers=h, allow_redirects=False, timeout=TIMEOUT
        )
        self._remember(response)
        return response

    def login(self, email=EMAIL, password=PASSWORD):
        response = self.request("POST", "/auth/login", {"email": email, "password": password})
        body = response.json()
        assert response.status_code == 200 and body.get("code") == "login_ok", (
            f"login: {response.status_code} {body}"
        )
        self.csrf = body["csrf_token"]
        return body

    def authorize(self, authorization_url, accept=True):
        """Returns the callback URL the provider sends the browser back to."""
        first = requests.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
        assert first.status_code in (302, 303), (
            f"authorize: expected a redirect, got {first.status_code} {first.text}"
        )
        location = urljoin(authorization_url, first.headers["Location"])
        request_id = query(location).get("request")
        if not request_id:
            return location
        info = self.request_info(request_id)
        if info.get("redirect_to"):
            return info["redirect_to"]
        # Accepting needs a session; rejecting does not.
        if info["login_required"] and accept:
            self.login()
        verb = "accept" if accept else "reject"
        headers = {"X-CSRF-Token": self.csrf} if self.csrf else {}
        response = self.request("POST", f"/auth/oauth/requests/{request_id}/{verb}", {}, headers)
        body = response.json()
        assert response.status_code == 200 and body.get("redirect_to"), (
            f"{verb}: {response.status_code} {body}"
        )
        return body["redirect_to"]

    def request_info(self, request_id):
        response = self.request("GET", f"/auth/oauth/requests/{request_id}")
        body = response.json()
        assert response.status_code == 200 and body.get("code") == "ok", (
            f"GET /auth/oauth/requests/{request_id}: {response.status_code} {body}"
        )
        return body


@pytest.fixture
def browser():
    return Browser()
