//! docs/API.md §8: the OpenID Provider, as a relying party and a security reviewer see it.
//! Each scenario drives the real service over HTTP: the browser part with the session
//! cookie, the relying party part with form posts to the token endpoint. Independent RP
//! libraries run the same flows in CI (tests/interop/).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, Browser, Csrf, TestApp, TestResponse, spawn_app_with};
use crate::mfa::enroll_verified_totp;
use crate::on_both_backends;

#[path = "../../examples/resource_server.rs"]
#[allow(dead_code)]
pub(crate) mod resource_server;

pub(crate) const SPA: &str = "spa";
pub(crate) const WEB: &str = "web";
pub(crate) const WEB_SECRET: &str = "web-secret-0123456789abcdef-0123456789";
const SERVICE: &str = "payments-batch";
const SERVICE_SECRET: &str = "svc-secret-0123456789abcdef-0123456789";
const JWT_CLIENT: &str = "jwt-app";
pub(crate) const FIRST_PARTY: &str = "mobile";
/// A third party allowed to initiate payments (RFC 9396 `payment_initiation`).
pub(crate) const TPP: &str = "tpp";
pub(crate) const TPP_SECRET: &str = "tpp-secret-0123456789abcdef-0123456789";
pub(crate) const REDIRECT: &str = "https://rp.example/cb";

/// A private_key_jwt client's key pair (generated per run; the public half is registered).
struct ClientKey {
    encoding: EncodingKey,
    jwk: Jwk,
}

fn client_key() -> ClientKey {
    let crate::fapi::Key { encoding, mut jwk } = crate::fapi::p256_key();
    jwk.common.key_id = Some("rp-key-1".into());
    ClientKey { encoding, jwk }
}

fn clients_file(key: &ClientKey) -> String {
    let clients = json!([
        {"client_id": SPA, "client_name": "Online Banking", "redirect_uris": [REDIRECT],
         "post_logout_redirect_uris": ["https://rp.example/bye"],
         "grant_types": ["authorization_code", "refresh_token"],
         "token_endpoint_auth_method": "none", "scope": "openid email accounts:read"},
        {"client_id": WEB, "client_name": "Advisor Portal", "redirect_uris": [REDIRECT],
         "grant_types": ["authorization_code", "refresh_token"],
         "token_endpoint_auth_method": "client_secret_basic", "client_secret": WEB_SECRET},
        {"client_id": JWT_CLIENT, "redirect_uris": [REDIRECT],
         "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.jwk]}},
        {"client_id": SERVICE, "grant_types": ["client_credentials"], "response_types": [],
         "token_endpoint_auth_method": "client_secret_post", "client_secret": SERVICE_SECRET,
         "scope": "payments:write ledger:read"},
        {"client_id": FIRST_PARTY, "redirect_uris": [REDIRECT], "skip_consent": true,
         "grant_types": ["authorization_code", "refresh_token"],
         "token_endpoint_auth_method": "none",
         "authorization_details_types": ["payment_initiation"]},
        {"client_id": TPP, "client_name": "Budget Planner TPP", "redirect_uris": [REDIRECT],
         "grant_types": ["authorization_code", "refresh_token"],
         "token_endpoint_auth_method": "client_secret_basic", "client_secret": TPP_SECRET,
         "authorization_details_types": ["payment_initiation"]}
    ]);
    let path = std::env::temp_dir().join(format!(
        "lcauth-clients-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, clients.to_string()).unwrap();
    path.display().to_string()
}

pub(crate) struct Provider {
    pub(crate) app: TestApp,
    key: ClientKey,
}

pub(crate) async fn provider(backend: Backend) -> Provider {
    provider_with(backend, &[]).await
}

pub(crate) async fn provider_with(backend: Backend, extra: &[(&str, &str)]) -> Provider {
    let key = client_key();
    let file = clients_file(&key);
    let mut vars = vec![("OIDC_CLIENTS_FILE", file.as_str())];
    vars.extend_from_slice(extra);
    let app = spawn_app_with(backend, &vars).await;
    Provider { app, key }
}

pub(crate) fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(crate) fn query_of(url: &str) -> HashMap<String, String> {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// A form post from a client's back end (no cookies) to `address` + `path`,
/// authenticated as `auth`, with an optional `DPoP` proof header.
pub(crate) async fn client_post(
    address: &str,
    path: &str,
    auth: &Auth<'_>,
    pairs: &[(&str, &str)],
    dpop: Option<&str>,
) -> TestResponse {
    let mut pairs: Vec<(&str, &str)> = pairs.to_vec();
    let mut request = reqwest::Client::new()
        .request(Method::POST, format!("{address}{path}"))
        .header("content-type", "application/x-www-form-urlencoded");
    match auth {
        Auth::Public(id) => pairs.push(("client_id", id)),
        Auth::Basic(id, secret) => {
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            request = request.header("authorization", format!("Basic {credentials}"));
        }
        Auth::Post(id, secret) => {
            pairs.push(("client_id", id));
            pairs.push(("client_secret", secret));
        }
        Auth::Jwt(token) => {
            pairs.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            pairs.push(("client_assertion", token));
        }
        Auth::Nothing => {}
    }
    if let Some(proof) = dpop {
        request = request.header("dpop", proof);
    }
    Browser::new(address)
        .execute(request.body(form(&pairs)), Csrf::None)
        .await
}

/// How the relying party authenticates at the token endpoint.
pub(crate) enum Auth<'a> {
    Public(&'a str),
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Jwt(String),
    /// Nothing but what the form already says.
    Nothing,
}

impl Provider {
    fn assertion(&self, client_id: &str, aud: &str, jti: &str, lifetime: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("rp-key-1".into());
        let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti,
                            "iat": now, "exp": now + lifetime});
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).unwrap()
    }

    pub(crate) fn issuer(&self) -> String {
        "http://localhost:8000".to_owned()
    }

    /// A form post from the relying party's back end (no cookies).
    pub(crate) async fn post_form(
        &self,
        path: &str,
        auth: &Auth<'_>,
        pairs: &[(&str, &str)],
    ) -> TestResponse {
        client_post(&self.app.address, path, auth, pairs, None).await
    }

    /// The browser part: authorize → login UI → (consent) accept → the client's callback.
    /// Returns the callback's query.
    pub(crate) async fn authorize(
        &self,
        browser: &Browser,
        client_id: &str,
        extra: &[(&str, &str)],
    ) -> (HashMap<String, String>, String) {
        let (verifier, challenge) = pkce();
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email"),
            ("state", "st-123"),
            ("nonce", "n-456"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k, v));
        }
        let start = browser
            .get(&format!("/oauth/authorize?{}", form(&pairs)))
            .await;
        assert_eq!(start.status, 303, "{start:?}");
        let location = start.header("location").unwrap().to_owned();
        if location.starts_with(REDIRECT) {
            return (query_of(&location), verifier);
        }
        let request = query_of(&location)["request"].clone();
        let info = browser
            .get(&format!("/auth/oauth/requests/{request}"))
            .await;
        assert_eq!(info.status, 200, "{info:?}");
        if let Some(done) = info.body["redirect_to"].as_str() {
            return (query_of(done), verifier);
        }
        let accepted = browser
            .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
            .await;
        assert_eq!(accepted.status, 200, "{accepted:?}");
        (
            query_of(accepted.body["redirect_to"].as_str().unwrap()),
            verifier,
        )
    }

    pub(crate) async fn code_tokens(
        &self,
        browser: &Browser,
        auth: &Auth<'_>,
        client_id: &str,
    ) -> Value {
        let (callback, verifier) = self.authorize(browser, client_id, &[]).await;
        let code = callback["code"].clone();
        let tokens = self
            .post_form(
                "/oauth/token",
                auth,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
        assert_eq!(tokens.status, 200, "{tokens:?}");
        tokens.body
    }

    async fn jwks(&self) -> JwkSet {
        let response = self.app.browser().get("/oauth/jwks").await;
        serde_json::from_value(response.body).unwrap()
    }

    /// Verifies a token of ours as a relying party would, against the published JWKS.
    pub(crate) async fn verify(&self, token: &str, typ: &str, aud: &str) -> Value {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(typ));
        let jwks = self.jwks().await;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("the kid is published");
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[aud]);
        validation.set_issuer(&[self.issuer()]);
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    }

    pub(crate) async fn userinfo(&self, access_token: &str) -> TestResponse {
        let request = reqwest::Client::new()
            .get(format!("{}/oauth/userinfo", self.app.address))
            .header("authorization", format!("Bearer {access_token}"));
        Browser::new(&self.app.address)
            .execute(request, Csrf::None)
            .await
    }

    pub(crate) async fn introspect(&self, token: &str) -> Value {
        let response = self
            .post_form(
                "/oauth/introspect",
                &Auth::Basic(WEB, WEB_SECRET),
                &[("token", token)],
            )
            .await;
        assert_eq!(response.status, 200, "{response:?}");
        response.body
    }
}

/// Starts an authorization request in `browser` (PKCE S256) and returns the request id the
/// login UI receives.
async fn pending_request(browser: &Browser, client_id: &str, extra: &[(&str, &str)]) -> String {
    let (_, challenge) = pkce();
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    let start = browser
        .get(&format!("/oauth/authorize?{}", form(&pairs)))
        .await;
    assert_eq!(start.status, 303, "{start:?}");
    query_of(start.header("location").unwrap())["request"].clone()
}

#[track_caller]
pub(crate) fn assert_oauth_error(response: &TestResponse, status: u16, error: &str) {
    assert_eq!(
        (response.status, response.body["error"].as_str()),
        (status, Some(error)),
        "{response:?}"
    );
    assert!(
        response.body["error_description"].is_string(),
        "{response:?}"
    );
}

async fn discovery_lists_the_endpoints_and_only_what_is_supported(backend: Backend) {
    let p = provider(backend).await;
    let browser = p.app.browser();
    let doc = browser.get("/.well-known/openid-configuration").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["issuer"], p.issuer());
    for (field, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("jwks_uri", "/oauth/jwks"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("end_session_endpoint", "/oauth/logout"),
    ] {
        assert_eq!(doc.body[field], format!("{}{path}", p.issuer()), "{field}");
    }
    assert_eq!(
        doc.body["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(doc.body["response_types_supported"], json!(["code"]));
    assert_eq!(
        doc.body["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert_eq!(
        doc.body["pushed_authorization_request_endpoint"],
        format!("{}/oauth/par", p.issuer())
    );
    let alias = browser.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(alias.body, doc.body, "one document under both names");
    let jwks = p.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    let key = &jwks.keys[0];
    assert!(key.common.key_id.is_some(), "keys carry a kid");
    assert!(
        serde_json::to_value(key).unwrap().get("d").is_none(),
        "never the private part"
    );
}

async fn a_public_client_completes_code_flow_with_pkce_and_rotating_refresh(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    // First time: the consent step is required; accepting it is the user's consent.
    let (verifier, challenge) = pkce();
    let start = alice
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[
                ("response_type", "code"),
                ("client_id", SPA),
                ("redirect_uri", REDIRECT),
                ("scope", "openid email"),
                ("state", "s1"),
                ("nonce", "n1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256")
            ])
        ))
        .await;
    assert_eq!(start.status, 303, "{start:?}");
    let location = start.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}/ui/login?request=", p.issuer())),
        "{location}"
    );
    let request = query_of(location)["request"].clone();
    let anonymous = p
        .app
        .browser()
        .get(&format!("/auth/oauth/requests/{request}"))
        .await;
    assert_eq!(anonymous.body["login_required"], true, "{anonymous:?}");
    let info = alice.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(
        info.body["client"],
        json!({"client_id": SPA, "client_name": "Online Banking"})
    );
    assert_eq!(info.body["scopes"], json!(["openid", "email"]));
    assert_eq!(
        (
            info.body["login_required"].clone(),
            info.body["consent_required"].clone()
        ),
        (json!(false), json!(true))
    );
    let accepted = alice
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let callback = query_of(accepted.body["redirect_to"].as_str().unwrap());
    assert_eq!(callback["state"], "s1");
    assert_eq!(callback["iss"], p.issuer());
    let again = alice
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    again.assert_error(400, "invalid_request_id");

    let tokens = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[
                ("grant_type", "authorization_code"),
                ("code", &callback["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(tokens.body["expires_in"], 300);
    let id = p
        .verify(tokens.body["id_token"].as_str().unwrap(), "JWT", SPA)
        .await;
    let me = alice.get("/auth/me").await;
    let user_id = me.body["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id["sub"], user_id);
    assert_eq!(id["nonce"], "n1");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["acr"], "urn:logicredit:loa:1");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(id["sid"].is_string() && id["auth_time"].is_u64());
    let access = p
        .verify(
            tokens.body["access_token"].as_str().unwrap(),
            "at+jwt",
            &p.issuer(),
        )
        .await;
    assert_eq!(
        (access["client_id"].as_str(), access["sub"].as_str()),
        (Some(SPA), Some(user_id.as_str()))
    );

    let info = p
        .userinfo(tokens.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(
        info.body,
        json!({"sub": user_id, "email": "alice@example.com", "email_verified": true})
    );

    // Refresh: rotated on every use; the old one coming back revokes the family.
    let first = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    let second = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let reuse = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
    assert_oauth_error(&reuse, 400, "invalid_grant");
    let newest = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[("grant_type", "refresh_token"), ("refresh_token", &second)],
        )
        .await;
    assert_oauth_error(&newest, 400, "invalid_grant");
    let after = p
        .userinfo(refreshed.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(after.status, 401, "the family's access tokens die with it");
    assert!(
        after
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );

    // The consent is remembered: the next request for the same scopes needs none.
    let (callback, _) = p.authorize(&alice, SPA, &[]).await;
    assert!(callback.contains_key("code"));
    let events = p.app.audit_events().await;
    for event in [
        "oauth.authorization_granted",
        "oauth.token_issued",
        "oauth.token_refreshed",
        "oauth.refresh_reuse_detected",
    ] {
        assert!(events.iter().any(|e| e == event), "{event} in {events:?}");
    }
}

async fn pkce_is_mandatory_and_errors_go_back_with_state_and_iss(backend: Backend) {
    let p = provider(backend).await;
    let browser = p.app.browser();
    let base = [
        ("response_type", "code"),
        ("client_id", SPA),
        ("redirect_uri", REDIRECT),
        ("state", "xyz"),
    ];
    for extra in [
        vec![],
        vec![
            ("code_challenge", "a".repeat(43)),
            ("code_challenge_method", "plain".to_owned()),
        ],
    ] {
        let mut pairs: Vec<(&str, &str)> = base.to_vec();
        for (k, v) in &extra {
            pairs.push((k, v));
        }
        let response = browser
            .get(&format!("/oauth/authorize?{}", form(&pairs)))
            .await;
        assert_eq!(response.status, 303, "{response:?}");
        let location = response.header("location").unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        let params = query_of(location);
        assert_eq!(params["error"], "invalid_request");
        assert_eq!(params["state"], "xyz");
        assert_eq!(params["iss"], p.issuer());
    }
    // Before the client and redirect URI are known, nothing is redirected.
    for pairs in [
        vec![
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", REDIRECT),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", SPA),
            ("redirect_uri", "https://evil.example/cb"),
        ],
    ] {
        let response = browser
            .get(&format!("/oauth/authorize?{}", form(&pairs)))
            .await;
        assert_oauth_error(&response, 400, "invalid_request");
        assert!(response.header("location").is_none());
    }
    let repeated = browser
        .get(&format!("/oauth/authorize?client_id={SPA}&client_id={WEB}"))
        .await;
    assert_oauth_error(&repeated, 400, "invalid_request");
}

async fn a_code_works_once_and_a_replay_revokes_what_it_issued(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let (callback, verifier) = p.authorize(&alice, WEB, &[]).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", callback["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let auth = Auth::Basic(WEB, WEB_SECRET);
    let first = p.post_form("/oauth/token", &auth, &exchange).await;
    assert_eq!(first.status, 200, "{first:?}");
    let access = first.body["access_token"].as_str().unwrap();
    assert_eq!(p.introspect(access).await["active"], true);
    let second = p.post_form("/oauth/token", &auth, &exchange).await;
    assert_oauth_error(&second, 400, "invalid_grant");
    assert_eq!(p.introspect(access).await, json!({"active": false}));
    assert_eq!(p.userinfo(access).await.status, 401);
    let refresh = first.body["refresh_token"].as_str().unwrap();
    assert_eq!(p.introspect(refresh).await, json!({"active": false}));

    // A wrong verifier is refused, and the code is spent by the attempt.
    let (callback, _) = p.authorize(&alice, WEB, &[]).await;
    let wrong = p
        .post_form(
            "/oauth/token",
            &auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &callback["code"]),
                ("code_verifier", &"x".repeat(43)),
            ],
        )
        .await;
    assert_oauth_error(&wrong, 400, "invalid_grant");
}

async fn clients_authenticate_only_with_their_registered_method(backend: Backend) {
    let p = provider(backend).await;
    let ccg = [("grant_type", "client_credentials")];
    let wrong_secret = p
        .post_form("/oauth/token", &Auth::Post(SERVICE, "not-the-secret"), &ccg)
        .await;
    assert_oauth_error(&wrong_secret, 401, "invalid_client");
    let wrong_basic = p
        .post_form("/oauth/token", &Auth::Basic(WEB, "nope"), &ccg)
        .await;
    assert_oauth_error(&wrong_basic, 401, "invalid_client");
    assert!(
        wrong_basic
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    let wrong_method = p
        .post_form("/oauth/token", &Auth::Basic(SERVICE, SERVICE_SECRET), &ccg)
        .await;
    assert_oauth_error(&wrong_method, 401, "invalid_client");
    let not_form = Browser::new(&p.app.address)
        .post("/oauth/token", json!({"grant_type": "client_credentials"}))
        .await;
    assert_oauth_error(&not_form, 400, "invalid_request");

    // private_key_jwt: aud the issuer, exp ≤ 60 s ahead, jti single-use.
    let alice = p.app.logged_in("alice@example.com").await;
    let (callback, verifier) = p.authorize(&alice, JWT_CLIENT, &[]).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", callback["code"].as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let assertion = p.assertion(JWT_CLIENT, &p.issuer(), "jti-1", 50);
    let ok = p
        .post_form("/oauth/token", &Auth::Jwt(assertion.clone()), &exchange)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let (callback, verifier) = p.authorize(&alice, JWT_CLIENT, &[]).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", callback["code"].as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let replayed = p
        .post_form("/oauth/token", &Auth::Jwt(assertion), &exchange)
        .await;
    assert_oauth_error(&replayed, 401, "invalid_client");
    let elsewhere = p.assertion(JWT_CLIENT, "https://other.example", "jti-2", 50);
    assert_oauth_error(
        &p.post_form("/oauth/token", &Auth::Jwt(elsewhere), &exchange)
            .await,
        401,
        "invalid_client",
    );
    let too_long = p.assertion(JWT_CLIENT, &p.issuer(), "jti-3", 3600);
    assert_oauth_error(
        &p.post_form("/oauth/token", &Auth::Jwt(too_long), &exchange)
            .await,
        401,
        "invalid_client",
    );
    let stranger = client_key();
    let forged = {
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("rp-key-1".into());
        let claims = json!({"iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": p.issuer(), "jti": "jti-4", "exp": now + 30});
        jsonwebtoken::encode(&header, &claims, &stranger.encoding).unwrap()
    };
    assert_oauth_error(
        &p.post_form("/oauth/token", &Auth::Jwt(forged), &exchange)
            .await,
        401,
        "invalid_client",
    );
}

async fn service_tokens_come_from_client_credentials_and_only_their_client_sees_them(
    backend: Backend,
) {
    let p = provider(backend).await;
    let auth = Auth::Post(SERVICE, SERVICE_SECRET);
    let issued = p
        .post_form(
            "/oauth/token",
            &auth,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "ledger:read"),
            ],
        )
        .await;
    assert_eq!(issued.status, 200, "{issued:?}");
    assert!(issued.body.get("refresh_token").is_none() && issued.body.get("id_token").is_none());
    let token = issued.body["access_token"].as_str().unwrap();
    let claims = p.verify(token, "at+jwt", &p.issuer()).await;
    assert_eq!(
        (claims["sub"].as_str(), claims["scope"].as_str()),
        (Some(SERVICE), Some("ledger:read"))
    );
    let mine = p
        .post_form("/oauth/introspect", &auth, &[("token", token)])
        .await;
    assert_eq!(mine.body["active"], true, "{mine:?}");
    assert_eq!(mine.body["client_id"], SERVICE);
    assert_eq!(
        p.introspect(token).await,
        json!({"active": false}),
        "another client learns nothing"
    );
    let public = p
        .post_form("/oauth/introspect", &Auth::Public(SPA), &[("token", token)])
        .await;
    assert_oauth_error(&public, 401, "invalid_client");
    let user_scope = p
        .post_form(
            "/oauth/token",
            &auth,
            &[("grant_type", "client_credentials"), ("scope", "openid")],
        )
        .await;
    assert_oauth_error(&user_scope, 400, "invalid_scope");
    let not_allowed = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(&not_allowed, 400, "unauthorized_client");
    // Userinfo is for users' tokens.
    assert_eq!(p.userinfo(token).await.status, 401);
    // Revoked, it is inactive everywhere.
    let revoked = p
        .post_form("/oauth/revoke", &auth, &[("token", token)])
        .await;
    assert_eq!(revoked.status, 200);
    let after = p
        .post_form("/oauth/introspect", &auth, &[("token", token)])
        .await;
    assert_eq!(after.body, json!({"active": false}));
    let metrics = p.app.metrics().await;
    for series in [
        // One recorder per process: other tests' counts add up, so only the series is checked.
        r#"oauth_tokens_total{client_id="payments-batch",grant_type="client_credentials",outcome="issued"} "#,
        r#"oauth_tokens_total{client_id="payments-batch",grant_type="access_token",outcome="revoked"} "#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}

async fn revocation_and_logout_end_refresh_tokens_on_every_instance(backend: Backend) {
    let p = provider(backend).await;
    let sibling = p.app.sibling(&[]).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let tokens = p
        .code_tokens(&alice, &Auth::Basic(WEB, WEB_SECRET), WEB)
        .await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    // Revoking the refresh token (RFC 7009) revokes its family.
    let revoked = p
        .post_form(
            "/oauth/revoke",
            &Auth::Basic(WEB, WEB_SECRET),
            &[("token", refresh)],
        )
        .await;
    assert_eq!(revoked.status, 200);
    let sibling_rp = Provider {
        app: sibling,
        key: client_key(),
    };
    let refused = sibling_rp
        .post_form(
            "/oauth/token",
            &Auth::Basic(WEB, WEB_SECRET),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_oauth_error(&refused, 400, "invalid_grant");
    // Unknown tokens are not an error (RFC 7009 §2.2).
    let unknown = p
        .post_form(
            "/oauth/revoke",
            &Auth::Basic(WEB, WEB_SECRET),
            &[("token", "nonsense")],
        )
        .await;
    assert_eq!(unknown.status, 200);

    // Logging out of the session ends what was issued from it.
    let tokens = p
        .code_tokens(&alice, &Auth::Basic(WEB, WEB_SECRET), WEB)
        .await;
    let logout = alice.post("/auth/logout", json!({})).await;
    assert_eq!(logout.status, 200);
    let refused = sibling_rp
        .post_form(
            "/oauth/token",
            &Auth::Basic(WEB, WEB_SECRET),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_oauth_error(&refused, 400, "invalid_grant");
    assert_eq!(
        sibling_rp
            .userinfo(tokens["access_token"].as_str().unwrap())
            .await
            .status,
        401
    );
}

async fn rp_initiated_logout_ends_the_session_named_by_the_id_token(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let tokens = p.code_tokens(&alice, &Auth::Public(SPA), SPA).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    // Without an ID token a plain confirmation form asks first; nothing ends yet.
    let confirm = alice.get("/oauth/logout?client_id=spa").await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm
            .body
            .as_str()
            .unwrap()
            .contains("<form method=\"post\"")
    );
    assert_eq!(alice.get("/auth/me").await.status, 200);
    // An unregistered post-logout URI is refused, with no redirect.
    let evil = alice
        .get(&format!(
            "/oauth/logout?{}",
            form(&[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", "https://evil.example/")
            ])
        ))
        .await;
    assert_oauth_error(&evil, 400, "invalid_request");
    assert_eq!(alice.get("/auth/me").await.status, 200);
    // A relying party's back channel (no cookie) with the ID token ends the session.
    let done = p
        .app
        .browser()
        .get(&format!(
            "/oauth/logout?{}",
            form(&[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", "https://rp.example/bye"),
                ("state", "bye-1")
            ])
        ))
        .await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(
        done.header("location"),
        Some("https://rp.example/bye?state=bye-1")
    );
    alice
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    let refresh = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_oauth_error(&refresh, 400, "invalid_grant");
}

async fn acr_values_for_two_factors_need_a_step_up_and_report_how(backend: Backend) {
    let p = provider_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "300")]).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let loa2 = [("acr_values", "urn:logicredit:loa:2")];
    // No second factor: the level cannot be reached; the client learns it, never a code.
    let (callback, _) = p.authorize(&alice, FIRST_PARTY, &loa2).await;
    assert_eq!(callback["error"], "unmet_authentication_requirements");
    assert!(!callback.contains_key("code"));

    let bob = p.app.logged_in("bob@example.com").await;
    enroll_verified_totp(&bob).await;
    // Bob's session was stepped up with TOTP: loa 2, amr otp + mfa.
    let (callback, verifier) = p.authorize(&bob, FIRST_PARTY, &loa2).await;
    let tokens = p
        .post_form(
            "/oauth/token",
            &Auth::Public(FIRST_PARTY),
            &[
                ("grant_type", "authorization_code"),
                ("code", &callback["code"]),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let id = p
        .verify(
            tokens.body["id_token"].as_str().unwrap(),
            "JWT",
            FIRST_PARTY,
        )
        .await;
    assert_eq!(id["acr"], "urn:logicredit:loa:2");
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));

    // Dave enrolled TOTP in this session but never used it: enrolling proves nothing, so
    // accepting needs a step-up first.
    let dave = p.app.logged_in("dave@example.com").await;
    let (authenticator, _) = crate::mfa::enroll_totp(&dave).await;
    let request = pending_request(
        &dave,
        FIRST_PARTY,
        &[("acr_values", "urn:logicredit:loa:2")],
    )
    .await;
    let info = dave.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(
        (
            info.body["login_required"].clone(),
            info.body["step_up_required"].clone()
        ),
        (json!(false), json!(true)),
        "{info:?}"
    );
    let refused = dave
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    refused.assert_error(401, "mfa_step_up_required");
    let stepped = dave
        .post(
            "/auth/mfa/totp/verify",
            json!({"code": authenticator.code(1)}),
        )
        .await;
    assert_eq!(stepped.body["code"], "mfa_verified", "{stepped:?}");
    let accepted = dave
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    assert!(query_of(accepted.body["redirect_to"].as_str().unwrap()).contains_key("code"));

    // prompt=none cannot ask Carol for anything: the request is decided at once.
    let carol = p.app.logged_in("carol@example.com").await;
    let request = pending_request(
        &carol,
        FIRST_PARTY,
        &[("acr_values", "urn:logicredit:loa:2"), ("prompt", "none")],
    )
    .await;
    let info = carol.get(&format!("/auth/oauth/requests/{request}")).await;
    let decided = query_of(info.body["redirect_to"].as_str().unwrap());
    assert_eq!(
        decided["error"], "unmet_authentication_requirements",
        "{info:?}"
    );
}

async fn prompt_none_without_a_session_answers_login_required(backend: Backend) {
    let p = provider(backend).await;
    let anonymous = p.app.browser();
    let (callback, _) = p
        .authorize(&anonymous, FIRST_PARTY, &[("prompt", "none")])
        .await;
    assert_eq!(callback["error"], "login_required");
    assert_eq!(callback["state"], "st-123");
    // A signed-in browser on the same site gets its code straight from the endpoint.
    let alice = p.app.logged_in("alice@example.com").await;
    let (_, challenge) = pkce();
    let direct = alice
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[
                ("response_type", "code"),
                ("client_id", FIRST_PARTY),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "s")
            ])
        ))
        .await;
    assert_eq!(direct.status, 303);
    assert!(
        direct
            .header("location")
            .unwrap()
            .starts_with(&format!("{REDIRECT}?code=")),
        "{direct:?}"
    );
    // max_age=0 is prompt=login: the existing session is too old, a login made after the
    // request satisfies it (OIDC Core §3.1.2.1).
    let request = pending_request(&alice, FIRST_PARTY, &[("max_age", "0")]).await;
    let info = alice.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(info.body["login_required"], true, "{info:?}");
    let again = p.app.login("alice@example.com").await;
    let accepted = again
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    // Declining ends the request with access_denied.
    let request = pending_request(&anonymous, SPA, &[("state", "s2")]).await;
    let declined = anonymous
        .post(&format!("/auth/oauth/requests/{request}/reject"), json!({}))
        .await;
    let callback = query_of(declined.body["redirect_to"].as_str().unwrap());
    assert_eq!(
        (callback["error"].as_str(), callback["state"].as_str()),
        ("access_denied", "s2")
    );
    anonymous
        .get(&format!("/auth/oauth/requests/{request}"))
        .await
        .assert_error(400, "invalid_request_id");
    anonymous
        .get("/auth/oauth/requests/not-a-uuid")
        .await
        .assert_error(400, "invalid_request_id");
    let unauthenticated = anonymous
        .send(
            Method::POST,
            &format!("/auth/oauth/requests/{}/accept", uuid::Uuid::new_v4()),
            Some(json!({})),
            Csrf::None,
        )
        .await;
    unauthenticated.assert_error(401, "not_authenticated");
}

async fn admins_register_clients_whose_secrets_are_stored_hashed(backend: Backend) {
    let p = provider(backend).await;
    let admin = p.app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&admin).await;
    let created = admin
        .post("/auth/admin/oauth-clients", json!({"client_id": "partner", "client_name": "Partner",
            "redirect_uris": ["https://partner.example/cb"], "token_endpoint_auth_method": "client_secret_post"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["client_secret"].as_str().unwrap().to_owned();
    let stored = p
        .app
        .query("SELECT secret_hash FROM oauth_clients WHERE client_id = 'partner'")
        .await;
    assert_ne!(stored[0].as_str().unwrap(), secret, "only a hash is stored");
    let listed = admin.get("/auth/admin/oauth-clients").await;
    let ids: Vec<&str> = listed.body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"partner") && ids.contains(&SPA), "{ids:?}");
    assert!(!listed.body.to_string().contains(&secret));
    // The new client works at once, on its registered method.
    let works = p
        .post_form(
            "/oauth/token",
            &Auth::Post("partner", &secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(&works, 400, "unauthorized_client");
    let bad = admin
        .post("/auth/admin/oauth-clients", json!({"client_id": "bad", "redirect_uris": ["http://evil.example/cb"], "token_endpoint_auth_method": "none"}))
        .await;
    bad.assert_error(422, "invalid_client_metadata");
    assert!(bad.body["fields"]["redirect_uris"].is_string(), "{bad:?}");
    let file = admin
        .send(
            Method::DELETE,
            &format!("/auth/admin/oauth-clients/{SPA}"),
            None,
            Csrf::Auto,
        )
        .await;
    file.assert_error(409, "client_not_changeable");
    let deleted = admin.delete("/auth/admin/oauth-clients/partner").await;
    assert_eq!(deleted.body["code"], "oauth_client_deleted", "{deleted:?}");
    let gone = p
        .post_form(
            "/oauth/token",
            &Auth::Post("partner", &secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(&gone, 401, "invalid_client");
    let user = p.app.logged_in("eve@example.com").await;
    user.get("/auth/admin/oauth-clients")
        .await
        .assert_error(403, "forbidden");
    assert!(
        p.app
            .audit_events()
            .await
            .iter()
            .filter(|e| *e == "oauth.client_changed")
            .count()
            >= 2
    );
}

async fn the_resource_server_example_accepts_access_tokens_only(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let (callback, verifier) = p
        .authorize(&alice, SPA, &[("scope", "openid accounts:read")])
        .await;
    let tokens = p
        .post_form(
            "/oauth/token",
            &Auth::Public(SPA),
            &[
                ("grant_type", "authorization_code"),
                ("code", &callback["code"]),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    let api =
        resource_server::JwksVerifier::new(&p.issuer(), &p.issuer()).fetching_from(&p.app.address);
    let claims = api
        .verify(tokens.body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(claims.has_scope("accounts:read"));
    assert_eq!(claims.client_id, SPA);
    assert!(
        api.verify(tokens.body["id_token"].as_str().unwrap())
            .await
            .is_err(),
        "an ID token is not an access token"
    );
    let other_api = resource_server::JwksVerifier::new(&p.issuer(), "https://other-api.example")
        .fetching_from(&p.app.address);
    assert!(
        other_api
            .verify(tokens.body["access_token"].as_str().unwrap())
            .await
            .is_err(),
        "audience is checked"
    );
    let mut tampered = tokens.body["access_token"].as_str().unwrap().to_owned();
    tampered.insert(tampered.len() - 3, 'A');
    assert!(api.verify(&tampered).await.is_err());
}

/// An invalid clients file stops the start, naming the client and the field.
#[tokio::test]
async fn an_invalid_clients_file_stops_the_start_naming_client_and_field() {
    let dir = std::env::temp_dir().join(format!(
        "lcauth-badclients-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clients.json");
    std::fs::write(&file, r#"[{"client_id":"shop","redirect_uris":["http://shop.example/cb"],"token_endpoint_auth_method":"none"}]"#).unwrap();
    let vars: HashMap<String, String> = [
        ("DATA_DIR", dir.display().to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/auth.db", dir.display()),
        ),
        (
            "TOTP_ENCRYPTION_KEY",
            crate::helpers::ENCRYPTION_KEY.to_owned(),
        ),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_ADDR", "off".to_owned()),
        ("OIDC_CLIENTS_FILE", file.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = logicredit_auth::configuration::Settings::from_vars(&vars).unwrap();
    let err = match logicredit_auth::startup::Application::build(settings).await {
        Ok(_) => panic!("an invalid clients file must stop the start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("client \"shop\": redirect_uris[0]: http is only allowed"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

on_both_backends!(
    the_resource_server_example_accepts_access_tokens_only,
    discovery_lists_the_endpoints_and_only_what_is_supported,
    a_public_client_completes_code_flow_with_pkce_and_rotating_refresh,
    pkce_is_mandatory_and_errors_go_back_with_state_and_iss,
    a_code_works_once_and_a_replay_revokes_what_it_issued,
    clients_authenticate_only_with_their_registered_method,
    service_tokens_come_from_client_credentials_and_only_their_client_sees_them,
    revocation_and_logout_end_refresh_tokens_on_every_instance,
    rp_initiated_logout_ends_the_session_named_by_the_id_token,
    acr_values_for_two_factors_need_a_step_up_and_report_how,
    prompt_none_without_a_session_answers_login_required,
    admins_register_clients_whose_secrets_are_stored_hashed,
);
