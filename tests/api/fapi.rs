//! docs/FAPI.md: the FAPI 2.0 Security Profile (final, February 2025) as a third-party
//! provider and a security reviewer see it — pushed authorization requests (RFC 9126),
//! `private_key_jwt` (RFC 7523), DPoP (RFC 9449) with server nonces. One scenario per
//! clause, each negative case next to the positive one it guards.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, Browser, Csrf, TestApp, TestResponse, spawn_app_with};
use crate::mfa::enroll_verified_totp;
use crate::on_both_backends;

use crate::oauth::{Auth, client_post, resource_server};

/// A third-party provider under the FAPI 2.0 profile.
const TPP: &str = "tpp";
/// A public client registered with `dpop_bound_access_tokens`.
const DPOP_SPA: &str = "dpop-spa";
/// An ordinary confidential client that registered `require_pushed_authorization_requests`.
const PAR_WEB: &str = "par-web";
const PAR_WEB_SECRET: &str = "par-web-secret-0123456789abcdef-012345";
const REDIRECT: &str = "https://tpp.example/cb";
const ISSUER: &str = "http://localhost:8000";

/// A P-256 key pair: a client's assertion key or a DPoP key.
pub(crate) struct Key {
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: Jwk,
}

pub(crate) fn p256_key() -> Key {
    use p256::elliptic_curve::Generate as _;
    use p256::pkcs8::EncodePrivateKey as _;
    let secret = p256::SecretKey::generate_from_rng(&mut rand::rng());
    let der = secret.to_pkcs8_der().unwrap();
    let encoding = EncodingKey::from_ec_der(der.as_bytes());
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    Key { encoding, jwk }
}

/// The DPoP SPA's authorization code flow up to the callback (the user is signed in and
/// the client skips consent): the callback's query and the PKCE verifier.
async fn dpop_spa_callback(browser: &Browser) -> (HashMap<String, String>, String) {
    let (params, verifier) = Provider::request_params(DPOP_SPA);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start = browser
        .get(&format!("/oauth/authorize?{}", form(&pairs)))
        .await;
    (query_of(start.header("location").unwrap()), verifier)
}

/// Pushes a TPP request at `pushing`, redeems its `request_uri` at `authorizing` (a code
/// comes back) and shows that a second use is refused with `400 invalid_request_uri` and no
/// redirect.
async fn pushed_once(pushing: &Provider, authorizing: &Provider, browser: &Browser) {
    let (pushed, _) = pushing.push(&[], None).await;
    let request_uri = pushed.body["request_uri"].as_str().unwrap().to_owned();
    let callback = authorizing
        .authorize_pushed(browser, TPP, &request_uri)
        .await;
    assert!(callback.contains_key("code"), "{callback:?}");
    let reused = browser
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[("client_id", TPP), ("request_uri", &request_uri)])
        ))
        .await;
    assert_oauth_error(&reused, 400, "invalid_request_uri");
    assert!(reused.header("location").is_none());
}

fn url(path: &str) -> String {
    format!("{ISSUER}{path}")
}

fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// What a proof may get wrong, for the negative cases.
#[derive(Default, Clone)]
struct ProofOptions<'a> {
    ath: Option<&'a str>,
    nonce: Option<&'a str>,
    typ: Option<&'a str>,
    iat_offset: i64,
    jti: Option<&'a str>,
}

impl Key {
    /// RFC 7638 thumbprint, as `cnf.jkt` names it.
    fn jkt(&self) -> String {
        self.jwk.thumbprint(ThumbprintHash::SHA256).unwrap()
    }

    fn proof_with(&self, htm: &str, htu: &str, options: &ProofOptions<'_>) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(options.typ.unwrap_or("dpop+jwt").to_owned());
        header.jwk = Some(self.jwk.clone());
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut claims = json!({
            "jti": options.jti.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
            "htm": htm, "htu": htu, "iat": now + options.iat_offset,
        });
        if let Some(ath) = options.ath {
            claims["ath"] = json!(ath);
        }
        if let Some(nonce) = options.nonce {
            claims["nonce"] = json!(nonce);
        }
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    /// A proof for a token request (with the server's nonce when given).
    fn token_proof(&self, nonce: Option<&str>) -> String {
        self.proof_with(
            "POST",
            &url("/oauth/token"),
            &ProofOptions {
                nonce,
                ..ProofOptions::default()
            },
        )
    }

    /// A proof for userinfo, over `access_token`.
    fn userinfo_proof(&self, access_token: &str) -> String {
        self.proof_with(
            "GET",
            &url("/oauth/userinfo"),
            &ProofOptions {
                ath: Some(&ath(access_token)),
                ..ProofOptions::default()
            },
        )
    }
}

fn clients_file(tpp: &Key) -> String {
    let mut tpp_jwk = serde_json::to_value(&tpp.jwk).unwrap();
    tpp_jwk["kid"] = json!("tpp-1");
    let clients = json!([
        {"client_id": TPP, "client_name": "Fintech TPP", "redirect_uris": [REDIRECT],
         "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
         "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [tpp_jwk]},
         "scope": "openid accounts:read", "profile": "fapi2"},
        {"client_id": DPOP_SPA, "redirect_uris": [REDIRECT], "skip_consent": true,
         "grant_types": ["authorization_code", "refresh_token"],
         "token_endpoint_auth_method": "none", "dpop_bound_access_tokens": true},
        {"client_id": PAR_WEB, "redirect_uris": [REDIRECT], "skip_consent": true,
         "token_endpoint_auth_method": "client_secret_basic", "client_secret": PAR_WEB_SECRET,
         "require_pushed_authorization_requests": true}
    ]);
    let path = std::env::temp_dir().join(format!(
        "lcauth-fapi-clients-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, clients.to_string()).unwrap();
    path.display().to_string()
}

struct Provider {
    app: TestApp,
    tpp: Key,
}

async fn provider(backend: Backend) -> Provider {
    let tpp = p256_key();
    let file = clients_file(&tpp);
    let app = spawn_app_with(backend, &[("OIDC_CLIENTS_FILE", file.as_str())]).await;
    Provider { app, tpp }
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

#[track_caller]
fn assert_oauth_error(response: &TestResponse, status: u16, error: &str) {
    assert_eq!(
        (response.status, response.body["error"].as_str()),
        (status, Some(error)),
        "{response:?}"
    );
}

/// A 401 at a resource endpoint: the error and a `DPoP` challenge naming it.
#[track_caller]
fn assert_dpop_challenge(response: &TestResponse, error: &str) {
    assert_oauth_error(response, 401, error);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
}

impl Provider {
    fn assertion_with(&self, aud: &str, jti: &str, iat_offset: i64, lifetime: i64) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64 + iat_offset;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("tpp-1".into());
        let claims = json!({"iss": TPP, "sub": TPP, "aud": aud, "jti": jti,
                            "iat": now, "exp": now + lifetime});
        jsonwebtoken::encode(&header, &claims, &self.tpp.encoding).unwrap()
    }

    /// A fresh, valid assertion: `aud` the issuer, 50 s, a new `jti`.
    fn assertion(&self) -> Auth<'static> {
        Auth::Jwt(self.assertion_with(ISSUER, &uuid::Uuid::new_v4().to_string(), 0, 50))
    }

    /// A form post from the client's back end, with an optional `DPoP` header.
    async fn post(
        &self,
        path: &str,
        auth: &Auth<'_>,
        pairs: &[(&str, &str)],
        dpop: Option<&str>,
    ) -> TestResponse {
        client_post(&self.app.address, path, auth, pairs, dpop).await
    }

    /// The authorization request's parameters, PKCE S256 included; returns the verifier.
    fn request_params(client_id: &str) -> (Vec<(&'static str, String)>, String) {
        let (verifier, challenge) = pkce();
        let params = vec![
            ("response_type", "code".to_owned()),
            ("client_id", client_id.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("scope", "openid".to_owned()),
            ("state", "st-1".to_owned()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".to_owned()),
        ];
        (params, verifier)
    }

    /// Pushes an authorization request of the TPP; returns the response and the verifier.
    async fn push(&self, extra: &[(&str, &str)], dpop: Option<&str>) -> (TestResponse, String) {
        let (mut params, verifier) = Self::request_params(TPP);
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            params.push((k, (*v).to_owned()));
        }
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = self
            .post("/oauth/par", &self.assertion(), &pairs, dpop)
            .await;
        (response, verifier)
    }

    /// The browser part with a pushed request: authorize → login UI → accept → callback.
    async fn authorize_pushed(
        &self,
        browser: &Browser,
        client_id: &str,
        request_uri: &str,
    ) -> HashMap<String, String> {
        let start = browser
            .get(&format!(
                "/oauth/authorize?{}",
                form(&[("client_id", client_id), ("request_uri", request_uri)])
            ))
            .await;
        assert_eq!(start.status, 303, "{start:?}");
        let location = start.header("location").unwrap().to_owned();
        if location.starts_with(REDIRECT) {
            return query_of(&location);
        }
        let request = query_of(&location)["request"].clone();
        let info = browser
            .get(&format!("/auth/oauth/requests/{request}"))
            .await;
        assert_eq!(info.status, 200, "{info:?}");
        if let Some(done) = info.body["redirect_to"].as_str() {
            return query_of(done);
        }
        let accepted = browser
            .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
            .await;
        assert_eq!(accepted.status, 200, "{accepted:?}");
        query_of(accepted.body["redirect_to"].as_str().unwrap())
    }

    /// A code for the TPP through PAR, and its verifier.
    async fn tpp_code(&self, browser: &Browser) -> (String, String) {
        let (pushed, verifier) = self.push(&[], None).await;
        assert_eq!(pushed.status, 201, "{pushed:?}");
        let callback = self
            .authorize_pushed(browser, TPP, pushed.body["request_uri"].as_str().unwrap())
            .await;
        (callback["code"].clone(), verifier)
    }

    /// The current server nonce, as any response of the token endpoint carries it.
    async fn nonce(&self) -> String {
        let response = self
            .post("/oauth/token", &Auth::Public("nobody"), &[], None)
            .await;
        response.header("dpop-nonce").unwrap().to_owned()
    }

    /// The TPP's tokens for `browser`'s user, bound to `key`.
    async fn tpp_tokens(&self, browser: &Browser, key: &Key) -> Value {
        let (code, verifier) = self.tpp_code(browser).await;
        let nonce = self.nonce().await;
        let tokens = self
            .post(
                "/oauth/token",
                &self.assertion(),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
                Some(&key.token_proof(Some(&nonce))),
            )
            .await;
        assert_eq!(tokens.status, 200, "{tokens:?}");
        tokens.body
    }

    async fn userinfo(&self, scheme: &str, token: &str, proof: Option<&str>) -> TestResponse {
        let mut request = reqwest::Client::new()
            .get(format!("{}/oauth/userinfo", self.app.address))
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        Browser::new(&self.app.address)
            .execute(request, Csrf::None)
            .await
    }

    /// A user who can do SCA (TOTP), in a session stepped up with it.
    async fn sca_user(&self, email: &str) -> Browser {
        let browser = self.app.logged_in(email).await;
        enroll_verified_totp(&browser).await;
        browser
    }
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// §5.3.2.1 (metadata), §5.3.2.2 (PAR), §5.3.3 (DPoP), RFC 9207: discovery says what the
/// profile needs.
async fn discovery_advertises_par_dpop_and_the_iss_parameter(backend: Backend) {
    let p = provider(backend).await;
    let doc = p
        .app
        .browser()
        .get("/.well-known/openid-configuration")
        .await;
    assert_eq!(
        doc.body["pushed_authorization_request_endpoint"],
        url("/oauth/par")
    );
    assert_eq!(doc.body["require_pushed_authorization_requests"], false);
    assert_eq!(
        doc.body["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "PS256"])
    );
    assert_eq!(
        doc.body["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(
        doc.body["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        doc.body["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "PS256", "EdDSA"])
    );
    // §5.2.3 item 3: no CORS on the authorization endpoint; the others keep theirs.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, cors) in [
        ("/oauth/authorize", false),
        ("/oauth/par", true),
        ("/oauth/token", true),
    ] {
        let preflight = http
            .request(Method::OPTIONS, format!("{}{path}", p.app.address))
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(
            preflight
                .headers()
                .contains_key("access-control-allow-origin"),
            cors,
            "{path}: {preflight:?}"
        );
    }
    let navigated = http
        .get(format!("{}/oauth/authorize?client_id={TPP}", p.app.address))
        .header("origin", "https://spa.example")
        .send()
        .await
        .unwrap();
    assert!(
        !navigated
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

/// The whole profile: PAR with private_key_jwt, the code with `iss`, a DPoP-bound token
/// after the nonce round trip, SCA (`loa:2`), userinfo with the proof, introspection with
/// `cnf`, and refresh with rotation (docs/API.md §8; see docs/FAPI.md on §5.3.2.1 item 10).
async fn a_fapi2_client_completes_par_private_key_jwt_and_dpop(backend: Backend) {
    let p = provider(backend).await;
    let bob = p.sca_user("bob@example.com").await;
    // §5.3.2.2 item 14: nonces of 64 characters are supported.
    let oidc_nonce = "n".repeat(64);
    let (pushed, verifier) = p.push(&[("nonce", &oidc_nonce)], None).await;
    assert_eq!(pushed.status, 201, "{pushed:?}");
    assert_eq!(pushed.header("cache-control"), Some("no-store"));
    let request_uri = pushed.body["request_uri"].as_str().unwrap().to_owned();
    assert!(
        request_uri.starts_with("urn:ietf:params:oauth:request_uri:"),
        "{request_uri}"
    );
    assert_eq!(pushed.body["expires_in"], 60);
    // Front-channel parameters other than client_id and request_uri do not count.
    let start = bob
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[
                ("client_id", TPP),
                ("request_uri", &request_uri),
                ("scope", "openid email"),
                ("redirect_uri", "https://evil.example/cb"),
            ])
        ))
        .await;
    assert_eq!(start.status, 303, "{start:?}");
    let request = query_of(start.header("location").unwrap())["request"].clone();
    let info = bob.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(info.body["scopes"], json!(["openid"]), "{info:?}");
    let accepted = bob
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    let callback = query_of(accepted.body["redirect_to"].as_str().unwrap());
    assert!(
        accepted.body["redirect_to"]
            .as_str()
            .unwrap()
            .starts_with(REDIRECT)
    );
    assert_eq!(callback["iss"], ISSUER);
    assert_eq!(callback["state"], "st-1");

    let key = p256_key();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", callback["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    // First try without a nonce: use_dpop_nonce with the nonce to use; the code is kept.
    let first = p
        .post(
            "/oauth/token",
            &p.assertion(),
            &exchange,
            Some(&key.token_proof(None)),
        )
        .await;
    assert_oauth_error(&first, 400, "use_dpop_nonce");
    let nonce = first.header("dpop-nonce").unwrap().to_owned();
    let tokens = p
        .post(
            "/oauth/token",
            &p.assertion(),
            &exchange,
            Some(&key.token_proof(Some(&nonce))),
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    assert_eq!(tokens.body["token_type"], "DPoP");
    let access = tokens.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&access)["cnf"], json!({"jkt": key.jkt()}));
    let id_token = claims_of(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["acr"], "urn:logicredit:loa:2");
    assert_eq!(id_token["nonce"], oidc_nonce);

    let info = p
        .userinfo("DPoP", &access, Some(&key.userinfo_proof(&access)))
        .await;
    assert_eq!(info.status, 200, "{info:?}");

    let introspected = p
        .post(
            "/oauth/introspect",
            &p.assertion(),
            &[("token", &access)],
            None,
        )
        .await;
    assert_eq!(introspected.body["active"], true, "{introspected:?}");
    assert_eq!(introspected.body["token_type"], "DPoP");
    assert_eq!(introspected.body["cnf"], json!({"jkt": key.jkt()}));

    // Refresh: rotated on every use as for every client (docs/API.md §8, stricter than
    // FAPI 2.0 §5.3.2.1 item 10); the old token then revokes the family.
    let first = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let p = &p;
        let key = &key;
        async move {
            let nonce = p.nonce().await;
            p.post(
                "/oauth/token",
                &p.assertion(),
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                Some(&key.token_proof(Some(&nonce))),
            )
            .await
        }
    };
    let refreshed = refresh(first.clone()).await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    assert_eq!(refreshed.body["token_type"], "DPoP");
    let second = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "rotated");
    let reused = refresh(first).await;
    assert_oauth_error(&reused, 400, "invalid_grant");
    let family = refresh(second).await;
    assert_oauth_error(&family, 400, "invalid_grant");
}

/// §5.3.2.2 items 1–2 and RFC 9126 §4: a fapi2 client's request must be pushed; a
/// `request_uri` works once, only for the client that pushed it, and is never redirected
/// to the client when it is bad.
async fn authorization_requests_of_fapi2_clients_must_be_pushed(backend: Backend) {
    let p = provider(backend).await;
    let bob = p.sca_user("bob@example.com").await;
    let (params, _) = Provider::request_params(TPP);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let unpushed = bob.get(&format!("/oauth/authorize?{}", form(&pairs))).await;
    assert_oauth_error(&unpushed, 400, "invalid_request");
    assert!(unpushed.header("location").is_none());

    pushed_once(&p, &p, &bob).await;
    for unknown in [
        "urn:ietf:params:oauth:request_uri:made-up",
        "https://tpp.example/request.jwt",
    ] {
        let response = bob
            .get(&format!(
                "/oauth/authorize?{}",
                form(&[("client_id", TPP), ("request_uri", unknown)])
            ))
            .await;
        assert_oauth_error(&response, 400, "invalid_request_uri");
        assert!(response.header("location").is_none());
    }
    // Another client cannot use it.
    let (pushed, _) = p.push(&[], None).await;
    let stolen = bob
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[
                ("client_id", DPOP_SPA),
                ("request_uri", pushed.body["request_uri"].as_str().unwrap())
            ])
        ))
        .await;
    assert_oauth_error(&stolen, 400, "invalid_request_uri");

    // The push itself is validated like an authorization request.
    let (nested, _) = p
        .push(
            &[("request_uri", "urn:ietf:params:oauth:request_uri:x")],
            None,
        )
        .await;
    assert_oauth_error(&nested, 400, "invalid_request");
    let (unregistered, _) = p
        .push(&[("redirect_uri", "https://evil.example/cb")], None)
        .await;
    assert_oauth_error(&unregistered, 400, "invalid_request");
    let (plain, _) = p.push(&[("code_challenge_method", "plain")], None).await;
    assert_oauth_error(&plain, 400, "invalid_request");
    let (scope, _) = p.push(&[("scope", "openid payments:admin")], None).await;
    assert_oauth_error(&scope, 400, "invalid_scope");
    let (params, _) = Provider::request_params(TPP);
    let no_redirect: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "redirect_uri")
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let missing = p
        .post("/oauth/par", &p.assertion(), &no_redirect, None)
        .await;
    assert_oauth_error(&missing, 400, "invalid_request");
    // The push needs client authentication (`client_id` alone is not enough).
    let anonymous = p.post("/oauth/par", &Auth::Nothing, &pairs, None).await;
    assert_oauth_error(&anonymous, 401, "invalid_client");
}

/// RFC 9126 §2.2, FAPI 2.0 §5.3.2.2: a `request_uri` expires after 60 s.
async fn a_pushed_request_expires_after_60_seconds(backend: Backend) {
    let p = provider(backend).await;
    let bob = p.sca_user("bob@example.com").await;
    let (pushed, _) = p.push(&[], None).await;
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    let expired = bob
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[
                ("client_id", TPP),
                ("request_uri", pushed.body["request_uri"].as_str().unwrap())
            ])
        ))
        .await;
    assert_oauth_error(&expired, 400, "invalid_request_uri");
    assert!(expired.header("location").is_none());
}

/// RFC 9126 §5 with `require_pushed_authorization_requests`: the same rule for any
/// client that registered it, whatever its authentication method.
async fn a_client_that_registered_par_cannot_skip_it(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let (params, _) = Provider::request_params(PAR_WEB);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let unpushed = alice
        .get(&format!("/oauth/authorize?{}", form(&pairs)))
        .await;
    assert_oauth_error(&unpushed, 400, "invalid_request");
    let pushed = p
        .post(
            "/oauth/par",
            &Auth::Basic(PAR_WEB, PAR_WEB_SECRET),
            &pairs,
            None,
        )
        .await;
    assert_eq!(pushed.status, 201, "{pushed:?}");
    let callback = p
        .authorize_pushed(
            &alice,
            PAR_WEB,
            pushed.body["request_uri"].as_str().unwrap(),
        )
        .await;
    assert!(callback.contains_key("code"), "{callback:?}");
}

/// §5.3.2.1 items 4–5 (SCA): `fapi2` requests always need `loa:2`; a user who cannot
/// do SCA ends with `unmet_authentication_requirements`, never a code.
async fn a_fapi2_request_from_a_user_without_sca_gets_no_code(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let (pushed, _) = p.push(&[], None).await;
    let callback = p
        .authorize_pushed(&alice, TPP, pushed.body["request_uri"].as_str().unwrap())
        .await;
    assert_eq!(callback["error"], "unmet_authentication_requirements");
    assert_eq!(callback["iss"], ISSUER);
    assert!(!callback.contains_key("code"));
}

/// §5.3.2.1 (client authentication), §5.3.3.4 and RFC 7523: `private_key_jwt` only —
/// no secret, `aud` the issuer (the token endpoint too), `exp` ≤ 60 s ahead and not past,
/// `jti` once, PS256/ES256/EdDSA; a fapi2 client cannot even be registered with a secret.
async fn fapi2_clients_authenticate_with_private_key_jwt_only(backend: Backend) {
    let p = provider(backend).await;
    let ccg = [("grant_type", "client_credentials")];
    let key = p256_key();
    let ok = |aud: &str, jti: &str| p.assertion_with(aud, jti, 0, 50);
    let first = p
        .post(
            "/oauth/token",
            &Auth::Jwt(ok(ISSUER, "a-1")),
            &ccg,
            Some(&key.token_proof(Some(&p.nonce().await))),
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let token_endpoint = p
        .post(
            "/oauth/token",
            &Auth::Jwt(ok(&url("/oauth/token"), "a-2")),
            &ccg,
            Some(&key.token_proof(Some(&p.nonce().await))),
        )
        .await;
    assert_eq!(token_endpoint.status, 200, "{token_endpoint:?}");

    let refused = [
        ("replayed jti", Auth::Jwt(ok(ISSUER, "a-1"))),
        (
            "wrong aud",
            Auth::Jwt(ok("https://other-bank.example", "a-3")),
        ),
        (
            "expired",
            Auth::Jwt(p.assertion_with(ISSUER, "a-4", -300, 60)),
        ),
        (
            "too long",
            Auth::Jwt(p.assertion_with(ISSUER, "a-5", 0, 3600)),
        ),
        (
            "HS256",
            Auth::Jwt({
                let now = jsonwebtoken::get_current_timestamp();
                let claims =
                    json!({"iss": TPP, "sub": TPP, "aud": ISSUER, "jti": "a-6", "exp": now + 30});
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims,
                    &EncodingKey::from_secret(b"guessable"),
                )
                .unwrap()
            }),
        ),
        (
            "iat 120 s in the future",
            Auth::Jwt({
                let now = jsonwebtoken::get_current_timestamp();
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some("tpp-1".into());
                let claims = json!({"iss": TPP, "sub": TPP, "aud": ISSUER, "jti": "a-7",
                                    "iat": now + 120, "exp": now + 50});
                jsonwebtoken::encode(&header, &claims, &p.tpp.encoding).unwrap()
            }),
        ),
        (
            "client_secret_post",
            Auth::Post(TPP, "a-secret-0123456789abcdef-0123456789"),
        ),
        (
            "client_secret_basic",
            Auth::Basic(TPP, "a-secret-0123456789abcdef-0123456789"),
        ),
        ("no authentication", Auth::Public(TPP)),
    ];
    for (what, auth) in &refused {
        let response = p
            .post(
                "/oauth/token",
                auth,
                &ccg,
                Some(&key.token_proof(Some(&p.nonce().await))),
            )
            .await;
        assert_eq!(
            (response.status, response.body["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {response:?}"
        );
    }

    // §5.3.2.1 item 2: no resource owner password grant.
    let password = p
        .post(
            "/oauth/token",
            &p.assertion(),
            &[
                ("grant_type", "password"),
                ("username", "bob@example.com"),
                ("password", "x"),
            ],
            Some(&key.token_proof(Some(&p.nonce().await))),
        )
        .await;
    assert_oauth_error(&password, 400, "unsupported_grant_type");

    let admin = p.app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&admin).await;
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        let created = admin
            .post(
                "/auth/admin/oauth-clients",
                json!({"client_id": "tpp-2", "redirect_uris": [REDIRECT], "profile": "fapi2",
                       "token_endpoint_auth_method": method}),
            )
            .await;
        created.assert_error(422, "invalid_client_metadata");
        assert!(
            created.body["fields"]["token_endpoint_auth_method"].is_string(),
            "{created:?}"
        );
    }
}

/// §5.3.3 and RFC 9449 §4.3: the token endpoint checks every part of the proof, and
/// clients registered for DPoP cannot do without it. A refused proof leaves the code
/// usable.
async fn dpop_proofs_are_checked_at_the_token_endpoint(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let (callback, verifier) = dpop_spa_callback(&alice).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", callback["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let key = p256_key();
    let token_url = url("/oauth/token");
    let reused = key.token_proof(None);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no proof", None),
        (
            "wrong htm",
            Some(key.proof_with("GET", &token_url, &ProofOptions::default())),
        ),
        (
            "wrong htu",
            Some(key.proof_with("POST", &url("/oauth/par"), &ProofOptions::default())),
        ),
        (
            "other host",
            Some(key.proof_with(
                "POST",
                "https://evil.example/oauth/token",
                &ProofOptions::default(),
            )),
        ),
        (
            "typ JWT",
            Some(key.proof_with(
                "POST",
                &token_url,
                &ProofOptions {
                    typ: Some("JWT"),
                    ..ProofOptions::default()
                },
            )),
        ),
        (
            "iat too old",
            Some(key.proof_with(
                "POST",
                &token_url,
                &ProofOptions {
                    iat_offset: -600,
                    ..ProofOptions::default()
                },
            )),
        ),
        (
            "iat in the future",
            Some(key.proof_with(
                "POST",
                &token_url,
                &ProofOptions {
                    iat_offset: 600,
                    ..ProofOptions::default()
                },
            )),
        ),
        ("not a JWS", Some("not.a.proof".to_owned())),
    ];
    for (what, proof) in &cases {
        let response = p
            .post(
                "/oauth/token",
                &Auth::Public(DPOP_SPA),
                &exchange,
                proof.as_deref(),
            )
            .await;
        assert_eq!(
            (response.status, response.body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {response:?}"
        );
    }
    // A proof signed by another key than the one in its header.
    let forged = {
        let other = p256_key();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(key.jwk.clone());
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"jti": "f-1", "htm": "POST", "htu": token_url, "iat": now});
        jsonwebtoken::encode(&header, &claims, &other.encoding).unwrap()
    };
    let response = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &exchange,
            Some(&forged),
        )
        .await;
    assert_oauth_error(&response, 400, "invalid_dpop_proof");
    // A nonce the server never issued.
    let foreign = key.token_proof(Some("1.bm90LW91cnM"));
    let response = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &exchange,
            Some(&foreign),
        )
        .await;
    assert_oauth_error(&response, 400, "use_dpop_nonce");
    assert!(response.header("dpop-nonce").is_some());

    let tokens = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &exchange,
            Some(&reused),
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    assert_eq!(tokens.body["token_type"], "DPoP");
    // The same proof again: a replay, refused on every instance.
    let replay = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    tokens.body["refresh_token"].as_str().unwrap(),
                ),
            ],
            Some(&reused),
        )
        .await;
    assert_oauth_error(&replay, 400, "invalid_dpop_proof");
}

/// §5.3.3 (fapi2) and docs/API.md §8: nonces are required at the token endpoint for
/// fapi2 clients, and only nonces this server issued count.
async fn dpop_nonces_are_required_for_fapi2_and_must_be_issued_here(backend: Backend) {
    let p = provider(backend).await;
    let key = p256_key();
    let ccg = [("grant_type", "client_credentials")];
    let missing = p
        .post(
            "/oauth/token",
            &p.assertion(),
            &ccg,
            Some(&key.token_proof(None)),
        )
        .await;
    assert_oauth_error(&missing, 400, "use_dpop_nonce");
    let nonce = missing.header("dpop-nonce").unwrap().to_owned();
    for forged in [
        "12345.AAAAAAAAAAAAAAAAAAAAAA",
        "made-up",
        &format!("{nonce}x"),
    ] {
        let response = p
            .post(
                "/oauth/token",
                &p.assertion(),
                &ccg,
                Some(&key.token_proof(Some(forged))),
            )
            .await;
        assert_oauth_error(&response, 400, "use_dpop_nonce");
    }
    let no_proof = p.post("/oauth/token", &p.assertion(), &ccg, None).await;
    assert_oauth_error(&no_proof, 400, "invalid_dpop_proof");
    let ok = p
        .post(
            "/oauth/token",
            &p.assertion(),
            &ccg,
            Some(&key.token_proof(Some(&nonce))),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["token_type"], "DPoP");
    assert_eq!(
        claims_of(ok.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
}

/// §5.3.3 and RFC 9449 §7: a bound token works at userinfo only with the DPoP scheme and
/// a fresh proof by its key over that very token.
async fn dpop_bound_tokens_need_their_proof_at_userinfo(backend: Backend) {
    let p = provider(backend).await;
    let bob = p.sca_user("bob@example.com").await;
    let key = p256_key();
    let tokens = p.tpp_tokens(&bob, &key).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let as_bearer = p.userinfo("Bearer", &access, None).await;
    assert_dpop_challenge(&as_bearer, "invalid_token");
    let as_bearer_with_proof = p
        .userinfo("Bearer", &access, Some(&key.userinfo_proof(&access)))
        .await;
    assert_dpop_challenge(&as_bearer_with_proof, "invalid_token");
    let without_proof = p.userinfo("DPoP", &access, None).await;
    assert_dpop_challenge(&without_proof, "invalid_token");
    let other_key = p256_key();
    let userinfo_url = url("/oauth/userinfo");
    let cases = [
        ("another key", other_key.userinfo_proof(&access)),
        (
            "no ath",
            key.proof_with("GET", &userinfo_url, &ProofOptions::default()),
        ),
        (
            "ath of another token",
            key.proof_with(
                "GET",
                &userinfo_url,
                &ProofOptions {
                    ath: Some(&ath("another-token")),
                    ..ProofOptions::default()
                },
            ),
        ),
        (
            "wrong htm",
            key.proof_with(
                "POST",
                &userinfo_url,
                &ProofOptions {
                    ath: Some(&ath(&access)),
                    ..ProofOptions::default()
                },
            ),
        ),
        (
            "wrong htu",
            key.proof_with(
                "GET",
                &url("/oauth/token"),
                &ProofOptions {
                    ath: Some(&ath(&access)),
                    ..ProofOptions::default()
                },
            ),
        ),
    ];
    for (what, proof) in &cases {
        let response = p.userinfo("DPoP", &access, Some(proof)).await;
        assert_eq!(
            (response.status, response.body["error"].as_str()),
            (401, Some("invalid_dpop_proof")),
            "{what}: {response:?}"
        );
    }
    let proof = key.userinfo_proof(&access);
    let ok = p.userinfo("DPoP", &access, Some(&proof)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let replayed = p.userinfo("DPoP", &access, Some(&proof)).await;
    assert_dpop_challenge(&replayed, "invalid_dpop_proof");

    // A resource server (examples/resource_server.rs) checks the same binding.
    let api = resource_server::JwksVerifier::new(ISSUER, ISSUER).fetching_from(&p.app.address);
    let accounts = "http://127.0.0.1:8100/accounts";
    let claims = api
        .verify_dpop(
            &access,
            &key.proof_with(
                "GET",
                accounts,
                &ProofOptions {
                    ath: Some(&ath(&access)),
                    ..ProofOptions::default()
                },
            ),
            "GET",
            accounts,
        )
        .await
        .unwrap();
    assert_eq!(claims.client_id, TPP);
    assert!(
        api.verify(&access).await.is_err(),
        "a bound token is not a bearer token"
    );
    assert!(
        api.verify_dpop(
            &access,
            &other_key.proof_with(
                "GET",
                accounts,
                &ProofOptions {
                    ath: Some(&ath(&access)),
                    ..ProofOptions::default()
                },
            ),
            "GET",
            accounts
        )
        .await
        .is_err(),
        "another key's proof"
    );
}

/// RFC 9449 §5 (FAPI 2.0 §5.3.2.1 on public clients): a public client's refresh token is
/// bound to its DPoP key; a thief without the key cannot use it, or burn it.
async fn a_public_clients_refresh_token_is_bound_to_its_dpop_key(backend: Backend) {
    let p = provider(backend).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let (callback, verifier) = dpop_spa_callback(&alice).await;
    let key = p256_key();
    let tokens = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &[
                ("grant_type", "authorization_code"),
                ("code", &callback["code"]),
                ("code_verifier", &verifier),
            ],
            Some(&key.token_proof(None)),
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let refresh = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let thief = p256_key();
    let stolen = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &form,
            Some(&thief.token_proof(None)),
        )
        .await;
    assert_oauth_error(&stolen, 400, "invalid_dpop_proof");
    let no_proof = p
        .post("/oauth/token", &Auth::Public(DPOP_SPA), &form, None)
        .await;
    assert_oauth_error(&no_proof, 400, "invalid_dpop_proof");
    let refreshed = p
        .post(
            "/oauth/token",
            &Auth::Public(DPOP_SPA),
            &form,
            Some(&key.token_proof(None)),
        )
        .await;
    assert_eq!(
        refreshed.status, 200,
        "the owner's token still works: {refreshed:?}"
    );
    assert_eq!(
        claims_of(refreshed.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    assert!(
        refreshed.body["refresh_token"].is_string(),
        "rotated for public clients"
    );
}

/// RFC 9449 §10: a code requested with a DPoP key (`dpop_jkt`, or a proof sent with the
/// push) is redeemed only with that key.
async fn a_code_pushed_with_a_dpop_key_is_redeemed_only_with_it(backend: Backend) {
    let p = provider(backend).await;
    let bob = p.sca_user("bob@example.com").await;
    let key = p256_key();
    let push_proof = key.proof_with("POST", &url("/oauth/par"), &ProofOptions::default());
    for (extra, proof) in [
        (vec![], Some(push_proof.as_str())),
        (vec![("dpop_jkt", key.jkt())], None),
    ] {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (pushed, verifier) = p.push(&extra, proof).await;
        assert_eq!(pushed.status, 201, "{pushed:?}");
        let callback = p
            .authorize_pushed(&bob, TPP, pushed.body["request_uri"].as_str().unwrap())
            .await;
        let other = p256_key();
        let nonce = p.nonce().await;
        let response = p
            .post(
                "/oauth/token",
                &p.assertion(),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &callback["code"]),
                    ("code_verifier", &verifier),
                ],
                Some(&other.token_proof(Some(&nonce))),
            )
            .await;
        assert_oauth_error(&response, 400, "invalid_dpop_proof");
    }
    let bad_proof = key.proof_with("POST", &url("/oauth/token"), &ProofOptions::default());
    let (refused, _) = p.push(&[], Some(&bad_proof)).await;
    assert_oauth_error(&refused, 400, "invalid_dpop_proof");
    let (with_both, _) = p
        .push(
            &[("dpop_jkt", &p256_key().jkt())],
            Some(&key.proof_with("POST", &url("/oauth/par"), &ProofOptions::default())),
        )
        .await;
    assert_oauth_error(&with_both, 400, "invalid_dpop_proof");
}

/// A client's own key server: serves whatever set the test puts in.
async fn jwks_server(set: std::sync::Arc<std::sync::Mutex<Value>>) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let set = set.clone();
            async move { axum::Json(set.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/jwks")
}

async fn remote_token(p: &Provider, assertion: String) -> TestResponse {
    let ccg = [("grant_type", "client_credentials")];
    p.post("/oauth/token", &Auth::Jwt(assertion), &ccg, None)
        .await
}

fn with_kid(key: &Key, kid: &str) -> Value {
    let mut jwk = serde_json::to_value(&key.jwk).unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

fn assertion_by(key: &Key, kid: &str, client_id: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let claims = json!({"iss": client_id, "sub": client_id, "aud": ISSUER,
                        "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 50});
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

/// §5.4.2 (JSON Web Key Sets) and RFC 7591 `jwks_uri`: a `private_key_jwt` client may
/// publish its keys; the provider fetches them (https, or http to loopback only), caches
/// them, and follows a rotation when an assertion names a new `kid`.
async fn clients_may_publish_their_keys_at_a_jwks_uri(backend: Backend) {
    let p = provider(backend).await;
    let old = p256_key();
    let published = std::sync::Arc::new(std::sync::Mutex::new(
        json!({"keys": [with_kid(&old, "k1")]}),
    ));
    let jwks_uri = jwks_server(published.clone()).await;
    let admin = p.app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&admin).await;
    let created = admin
        .post(
            "/auth/admin/oauth-clients",
            json!({"client_id": "remote-keys", "grant_types": ["client_credentials"],
                   "response_types": [], "scope": "accounts:read",
                   "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let first = remote_token(&p, assertion_by(&old, "k1", "remote-keys")).await;
    assert_eq!(first.status, 200, "{first:?}");

    // The client rotates: the new key is fetched when an assertion names it.
    let new = p256_key();
    *published.lock().unwrap() = json!({"keys": [with_kid(&new, "k2")]});
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let rotated = remote_token(&p, assertion_by(&new, "k2", "remote-keys")).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let retired = remote_token(&p, assertion_by(&old, "k1", "remote-keys")).await;
    assert_oauth_error(&retired, 401, "invalid_client");
    let stranger = remote_token(&p, assertion_by(&p256_key(), "k2", "remote-keys")).await;
    assert_oauth_error(&stranger, 401, "invalid_client");

    for (metadata, field) in [
        (json!({"jwks_uri": "http://keys.example/jwks"}), "jwks_uri"),
        (json!({"jwks_uri": "ftp://127.0.0.1/jwks"}), "jwks_uri"),
        (
            json!({"jwks_uri": jwks_uri, "jwks": {"keys": [with_kid(&new, "k2")]}}),
            "jwks_uri",
        ),
    ] {
        let mut body = json!({"client_id": "bad-keys", "grant_types": ["client_credentials"],
                              "response_types": [], "token_endpoint_auth_method": "private_key_jwt"});
        for (k, v) in metadata.as_object().unwrap() {
            body[k] = v.clone();
        }
        let refused = admin.post("/auth/admin/oauth-clients", body).await;
        refused.assert_error(422, "invalid_client_metadata");
        assert!(refused.body["fields"][field].is_string(), "{refused:?}");
    }
}

/// Behind a load balancer (PostgreSQL + Redis; the embedded deployment is one node): a
/// request pushed to one instance is used on another, once; a nonce of one instance is good
/// on the other; a DPoP proof or a client assertion used on one is a replay on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn par_nonces_and_replays_span_every_instance() {
    let p = provider(Backend::PostgresRedis).await;
    let other = Provider {
        app: p.app.sibling(&[]).await,
        tpp: Key {
            encoding: p.tpp.encoding.clone(),
            jwk: p.tpp.jwk.clone(),
        },
    };
    let bob = p.sca_user("bob@example.com").await;
    pushed_once(&p, &other, &bob).await;

    let key = p256_key();
    let ccg = [("grant_type", "client_credentials")];
    let proof = key.token_proof(Some(&p.nonce().await));
    let assertion = p.assertion();
    let first = other
        .post("/oauth/token", &assertion, &ccg, Some(&proof))
        .await;
    assert_eq!(
        first.status, 200,
        "a nonce of one instance works on the other: {first:?}"
    );
    let replayed_proof = p
        .post("/oauth/token", &p.assertion(), &ccg, Some(&proof))
        .await;
    assert_oauth_error(&replayed_proof, 400, "invalid_dpop_proof");
    let replayed_assertion = p
        .post(
            "/oauth/token",
            &assertion,
            &ccg,
            Some(&key.token_proof(Some(&p.nonce().await))),
        )
        .await;
    assert_oauth_error(&replayed_assertion, 401, "invalid_client");
}

on_both_backends!(
    clients_may_publish_their_keys_at_a_jwks_uri,
    discovery_advertises_par_dpop_and_the_iss_parameter,
    a_fapi2_client_completes_par_private_key_jwt_and_dpop,
    authorization_requests_of_fapi2_clients_must_be_pushed,
    a_pushed_request_expires_after_60_seconds,
    a_client_that_registered_par_cannot_skip_it,
    a_fapi2_request_from_a_user_without_sca_gets_no_code,
    fapi2_clients_authenticate_with_private_key_jwt_only,
    dpop_proofs_are_checked_at_the_token_endpoint,
    dpop_nonces_are_required_for_fapi2_and_must_be_issued_here,
    dpop_bound_tokens_need_their_proof_at_userinfo,
    a_public_clients_refresh_token_is_bound_to_its_dpop_key,
    a_code_pushed_with_a_dpop_key_is_redeemed_only_with_it,
);
