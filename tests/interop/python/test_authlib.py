"""The OpenID Provider against authlib (requests integration): a second relying-party
library, in another language, that nobody here wrote.

Code + PKCE with client_secret_basic and with private_key_jwt (authlib's PrivateKeyJWT),
the ID token checked with authlib's JsonWebToken against the JWKS, refresh with rotation,
userinfo, client_credentials with client_secret_post, introspection, revocation; and the
RFC errors a client must get.
"""

import secrets
import warnings

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc.jwk import ECKey

from conftest import TEST_KEY, TIMEOUT, query

with warnings.catch_warnings():
    # authlib.jose is deprecated in favour of joserfc, and stays until authlib 2.0.
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken


class PrivateKeyJWT60(PrivateKeyJWT):
    """authlib's PrivateKeyJWT, with the assertion's exp 60 s ahead instead of authlib's
    default 3600 s: the provider refuses assertions that live longer (API.md §8, as FAPI 2.0
    asks). Each assertion gets a fresh jti unless `claims` fixes one."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            claims=dict(self.claims or {}),
            header=self.headers,
            alg=self.alg,
            expires_in=60,
        )


def validate_id_token(id_token, jwks, issuer, client_id, nonce, access_token, algs):
    """OIDC Core 3.1.3.7 with authlib: signature against the JWKS, iss, aud, exp, iat,
    nonce; then azp and at_hash as authlib's CodeIDToken checks them."""
    claims = JsonWebToken(algs).decode(
        id_token,
        JsonWebKey.import_key_set(jwks),
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        },
    )
    claims.validate(leeway=5)
    params = {"nonce": nonce, "client_id": client_id, "access_token": access_token}
    CodeIDToken(dict(claims), dict(claims.header), {}, params).validate(leeway=5)
    return claims


def verify_access_token(token, jwks, issuer, algs):
    """RFC 9068: a JWT with typ at+jwt, signed with a published key, aud = the issuer."""
    claims = JsonWebToken(algs).decode(
        token,
        JsonWebKey.import_key_set(jwks),
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": issuer},
            "exp": {"essential": True},
            "client_id": {"essential": True},
            "jti": {"essential": True},
        },
    )
    claims.validate(leeway=5)
    assert claims.header["typ"].lower() in ("at+jwt", "application/at+jwt")
    return claims


def code_flow(browser, metadata, session, redirect_uri, scope="openid email"):
    """Authorization code + PKCE S256 driven by authlib; the browser part by `browser`."""
    verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"],
        code_verifier=verifier,
        nonce=nonce,
        redirect_uri=redirect_uri,
        scope=scope,
    )
    callback = browser.authorize(url)
    params = query(callback)
    assert params.get("iss") == metadata["issuer"], f"RFC 9207 iss in {callback}"
    assert params.get("state") == state
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        redirect_uri=redirect_uri,
        state=state,
    )
    return token, nonce, callback, verifier, state


def userinfo(metadata, access_token):
    return requests.get(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=TIMEOUT,
    )


def assert_invalid_token(response, what):
    assert response.status_code == 401, f"{what}: {response.status_code} {response.text}"
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.lower().startswith("bearer"), f"{what}: challenge {challenge!r}"
    assert 'error="invalid_token"' in challenge, f"{what}: challenge {challenge!r}"


def oauth_error(call):
    with pytest.raises(OAuthError) as raised:
        call()
    return raised.value.error


@pytest.fixture(scope="module")
def algs(metadata):
    return metadata["id_token_signing_alg_values_supported"]


@pytest.fixture(scope="module")
def web(clients):
    return clients["interop-web"]


@pytest.fixture(scope="module")
def pkjwt(clients):
    return clients["interop-pkjwt"]


@pytest.fixture(scope="module")
def service(clients):
    return clients["interop-service"]


def web_session(web, secret=None):
    return OAuth2Session(
        web["client_id"],
        secret or web["client_secret"],
        scope="openid email",
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


def pkjwt_session(pkjwt, metadata, key=None, claims=None):
    return OAuth2Session(
        pkjwt["client_id"],
        key or ECKey.import_key(TEST_KEY),
        scope="openid email",
        code_challenge_method="S256",
        token_endpoint_auth_method=PrivateKeyJWT60(
            metadata["token_endpoint"], claims=claims, headers={"kid": TEST_KEY["kid"]}, alg="ES256"
        ),
    )


def test_metadata_is_valid_openid_provider_metadata(metadata, issuer):
    checked = OpenIDProviderMetadata(metadata)
    for name in dir(checked):
        # OpenID Connect Discovery 1.0 §3 says RS256 MUST be listed; the provider signs
        # with ES256 (EdDSA configurable) only, as FAPI 2.0 asks, and leaves RS256 out on
        # purpose (docs/STACK.md: RSA signing would use the rsa crate of RUSTSEC-2023-0071).
        # Every other rule of authlib's validator holds.
        if name.startswith("validate_") and name != "validate_id_token_signing_alg_values_supported":
            getattr(checked, name)()
    assert "ES256" in metadata["id_token_signing_alg_values_supported"]
    assert metadata["issuer"] == issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]


def test_code_pkce_client_secret_basic(browser, metadata, jwks, algs, web, issuer):
    session = web_session(web)
    token, nonce, _, _, _ = code_flow(browser, metadata, session, web["redirect_uris"][0])
    claims = validate_id_token(
        token["id_token"], jwks, issuer, web["client_id"], nonce, token["access_token"], algs
    )
    assert claims["acr"] == "urn:logicredit:loa:1"
    assert "pwd" in claims["amr"]
    assert claims["sid"] and isinstance(claims["auth_time"], int)
    assert token["token_type"].lower() == "bearer"
    at = verify_access_token(token["access_token"], jwks, issuer, algs)
    assert at["sub"] == claims["sub"] and at["client_id"] == web["client_id"]

    info = session.get(metadata["userinfo_endpoint"], timeout=TIMEOUT)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == claims["sub"]
    assert info.json()["email"] == claims["email"]

    # Refresh: rotated; the new access token works; the old refresh token is refused.
    first_refresh = token["refresh_token"]
    renewed = session.refresh_token(metadata["token_endpoint"], refresh_token=first_refresh)
    assert renewed["refresh_token"] != first_refresh
    assert userinfo(metadata, renewed["access_token"]).json()["sub"] == claims["sub"]

    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=renewed["access_token"]
    ).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == web["client_id"]
    assert introspected["sub"] == claims["sub"]

    reuse = oauth_error(
        lambda: session.refresh_token(metadata["token_endpoint"], refresh_token=first_refresh)
    )
    assert reuse == "invalid_grant"
    family = oauth_error(
        lambda: session.refresh_token(
            metadata["token_endpoint"], refresh_token=renewed["refresh_token"]
        )
    )
    assert family == "invalid_grant", "the family of a reused refresh token is revoked"


def test_code_pkce_private_key_jwt(browser, metadata, jwks, algs, pkjwt, issuer):
    session = pkjwt_session(pkjwt, metadata)
    token, nonce, _, _, _ = code_flow(browser, metadata, session, pkjwt["redirect_uris"][0])
    claims = validate_id_token(
        token["id_token"], jwks, issuer, pkjwt["client_id"], nonce, token["access_token"], algs
    )
    assert claims["email"] == userinfo_email(metadata, token)
    renewed = session.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    assert renewed["access_token"] != token["access_token"]
    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=renewed["access_token"]
    ).json()
    assert introspected["active"] is True and introspected["client_id"] == pkjwt["client_id"]

    # Another key, the same kid: invalid_client.
    stranger = ECKey.generate_key("P-256", private=True)
    impostor = pkjwt_session(pkjwt, metadata, key=stranger)
    response = impostor.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]},
        auth=impostor.client_auth(impostor.token_endpoint_auth_method),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"

    # The same jti twice: invalid_client the second time.
    jti = f"interop-{secrets.token_hex(16)}"
    fixed = pkjwt_session(pkjwt, metadata, claims={"jti": jti})
    once = fixed.refresh_token(metadata["token_endpoint"], refresh_token=renewed["refresh_token"])
    response = fixed.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": once["refresh_token"]},
        auth=fixed.client_auth(fixed.token_endpoint_auth_method),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def userinfo_email(metadata, token):
    response = userinfo(metadata, token["access_token"])
    assert response.status_code == 200, response.text
    return response.json()["email"]


def test_authlib_default_assertion_lifetime_is_refused(metadata, pkjwt):
    """authlib's PrivateKeyJWT signs assertions that expire in an hour; API.md §8 accepts
    at most 60 s ahead. This documents the setting an integrator has to change."""
    session = OAuth2Session(
        pkjwt["client_id"],
        ECKey.import_key(TEST_KEY),
        token_endpoint_auth_method=PrivateKeyJWT(metadata["token_endpoint"], alg="ES256"),
    )
    response = session.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": "x" * 43},
        auth=session.client_auth(session.token_endpoint_auth_method),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_client_credentials_client_secret_post(metadata, jwks, algs, service, issuer):
    session = OAuth2Session(
        service["client_id"],
        service["client_secret"],
        scope="accounts:read",
        token_endpoint_auth_method="client_secret_post",
        # authlib authenticates revocation separately (default client_secret_basic); the
        # provider wants the method the client registered, on every endpoint.
        revocation_endpoint_auth_method="client_secret_post",
    )
    token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "accounts:read"
    assert "refresh_token" not in token and "id_token" not in token
    assert 0 < token["expires_in"] <= 300
    at = verify_access_token(token["access_token"], jwks, issuer, algs)
    assert at["client_id"] == service["client_id"]
    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == service["client_id"]
    assert introspected["scope"] == "accounts:read"

    # RFC 7009 then RFC 7662: revoked → inactive.
    revoked = session.revoke_token(
        metadata["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token"
    )
    assert revoked.status_code == 200, revoked.text
    after = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert after == {"active": False}

    wrong = OAuth2Session(
        service["client_id"], "not-the-secret", token_endpoint_auth_method="client_secret_post"
    )
    response = wrong.post(
        metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "scope": "accounts:read"},
        auth=wrong.client_auth("client_secret_post"),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_wrong_secret_basic_gets_401_with_a_basic_challenge(metadata, web):
    """RFC 6749 §5.2: a client that authenticated with the Authorization header gets 401
    and a WWW-Authenticate challenge for that scheme."""
    response = requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": "x" * 43},
        auth=(web["client_id"], "not-the-secret"),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers.get("WWW-Authenticate", "").lower().startswith("basic")


def test_code_used_twice(browser, metadata, web):
    session = web_session(web)
    token, _, callback, verifier, state = code_flow(
        browser, metadata, session, web["redirect_uris"][0]
    )
    assert userinfo(metadata, token["access_token"]).status_code == 200
    replay = oauth_error(
        lambda: web_session(web).fetch_token(
            metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=verifier,
            redirect_uri=web["redirect_uris"][0],
            state=state,
        )
    )
    assert replay == "invalid_grant"
    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert introspected["active"] is False
    assert_invalid_token(userinfo(metadata, token["access_token"]), "access token of a replayed code")


def test_missing_and_plain_pkce_redirect_with_invalid_request(metadata, web, issuer):
    for what, extra in (
        ("missing", {}),
        ("plain", {"code_challenge": generate_token(64), "code_challenge_method": "plain"}),
    ):
        # No code_challenge_method on the session: authlib then sends no challenge itself.
        session = OAuth2Session(web["client_id"], web["client_secret"], scope="openid")
        url, state = session.create_authorization_url(
            metadata["authorization_endpoint"],
            redirect_uri=web["redirect_uris"][0],
            nonce=generate_token(24),
            **extra,
        )
        response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code in (302, 303), f"{what}: {response.status_code} {response.text}"
        location = response.headers["Location"]
        assert location.startswith(web["redirect_uris"][0] + "?"), f"{what}: {location}"
        params = query(location)
        assert params.get("error") == "invalid_request", f"{what}: {params}"
        assert params.get("state") == state, f"{what}: {params}"
        assert params.get("iss") == issuer, f"{what}: {params}"
        assert "code" not in params


def test_unregistered_redirect_uri_is_not_followed(metadata, web):
    session = web_session(web)
    url, _ = session.create_authorization_url(
        metadata["authorization_endpoint"],
        code_verifier=generate_token(64),
        redirect_uri="https://attacker.example/callback",
    )
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 400, response.text
    assert "Location" not in response.headers


def test_revoked_access_token_is_refused_at_userinfo(browser, metadata, web):
    session = web_session(web)
    token, _, _, _, _ = code_flow(browser, metadata, session, web["redirect_uris"][0])
    assert userinfo(metadata, token["access_token"]).status_code == 200
    revoked = session.revoke_token(
        metadata["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token"
    )
    assert revoked.status_code == 200
    assert_invalid_token(userinfo(metadata, token["access_token"]), "revoked access token")
    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert introspected == {"active": False}


def test_a_wrong_token_type_hint_does_not_hide_the_token(browser, metadata, web):
    """RFC 7009 §2.1 and RFC 7662 §2.1: a hint that does not fit makes the server search
    further; it never changes the answer."""
    session = web_session(web)
    token, _, _, _, _ = code_flow(browser, metadata, session, web["redirect_uris"][0])
    introspected = session.introspect_token(
        metadata["introspection_endpoint"],
        token=token["access_token"],
        token_type_hint="refresh_token",
    ).json()
    assert introspected["active"] is True, introspected
    revoked = session.revoke_token(
        metadata["revocation_endpoint"],
        token=token["access_token"],
        token_type_hint="refresh_token",
    )
    assert revoked.status_code == 200, revoked.text
    assert_invalid_token(userinfo(metadata, token["access_token"]), "revoked under a wrong hint")


def test_userinfo_and_authorize_answer_post_too(browser, metadata, web):
    """OpenID Connect Core §5.3.1 (userinfo by POST) and §3.1.2.1 (the authorization
    request by form POST)."""
    session = web_session(web)
    token, _, _, _, _ = code_flow(browser, metadata, session, web["redirect_uris"][0])
    response = requests.post(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert response.json()["sub"]

    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"],
        code_verifier=generate_token(64),
        redirect_uri=web["redirect_uris"][0],
        nonce=generate_token(24),
    )
    form = query(url)
    response = requests.post(
        metadata["authorization_endpoint"], data=form, allow_redirects=False, timeout=TIMEOUT
    )
    assert response.status_code in (302, 303), response.text
    assert "request=" in response.headers["Location"], response.headers["Location"]
    assert form["state"] == state
