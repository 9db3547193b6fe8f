//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0, docs/API.md §8): with a
//! valid `id_token_hint` the session it names ends at once; without one the user confirms
//! first on a plain form (a cross-site link must not log anyone out). A
//! `post_logout_redirect_uri` is followed only when registered for the client.

use std::collections::HashMap;

use jsonwebtoken::Validation;

use super::tokens::{ID_TOKEN_TYP, IdClaims};
use super::{OAuth, OAuthError, OAuthResult};
use crate::services::audit::RequestContext;
use crate::services::sessions::CurrentSession;

/// What the end-session endpoint does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logout {
    /// Logged out: to the client's registered URI (with `state`), or a plain page.
    Done { redirect_to: Option<String> },
    /// No ID token: ask the user first (the form posts back with `confirm=yes`).
    Confirm { params: Vec<(String, String)> },
}

impl OAuth {
    pub async fn end_session(
        &self,
        params: &HashMap<String, String>,
        session: Option<&CurrentSession>,
        ctx: &RequestContext,
    ) -> OAuthResult<Logout> {
        let hint = match params.get("id_token_hint") {
            None => None,
            Some(token) => Some(self.read_hint(token).await?),
        };
        let client_id = match (params.get("client_id"), &hint) {
            (Some(given), Some(claims)) if *given != claims.aud => {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the id_token_hint",
                ));
            }
            (Some(given), _) => Some(given.clone()),
            (None, Some(claims)) => Some(claims.aud.clone()),
            (None, None) => None,
        };
        let redirect_to = match params.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let client = match &client_id {
                    Some(id) => self.clients.find(id).await?,
                    None => None,
                };
                let client = client.ok_or_else(|| {
                    OAuthError::invalid_request(
                        "post_logout_redirect_uri needs id_token_hint or client_id",
                    )
                })?;
                if !client.has_post_logout_redirect_uri(uri) {
                    return Err(OAuthError::invalid_request(
                        "post_logout_redirect_uri is not registered for this client",
                    ));
                }
                let mut query = Vec::new();
                if let Some(state) = params.get("state") {
                    query.push(("state", state.as_str()));
                }
                Some(super::authorize::with_params(uri, &query))
            }
        };
        match hint {
            Some(claims) => {
                let user_id = claims
                    .sub
                    .parse()
                    .map_err(|_| OAuthError::invalid_request("id_token_hint is not valid"))?;
                self.sessions.logout_by_id(user_id, claims.sid, ctx).await?;
                Ok(Logout::Done { redirect_to })
            }
            None if params.get("confirm").map(String::as_str) == Some("yes") => {
                if let Some(session) = session {
                    self.sessions.logout(session, ctx).await?;
                }
                Ok(Logout::Done { redirect_to })
            }
            None => {
                let keep = [
                    "client_id",
                    "post_logout_redirect_uri",
                    "state",
                    "ui_locales",
                ];
                let params = keep
                    .iter()
                    .filter_map(|k| params.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                    .collect();
                Ok(Logout::Confirm { params })
            }
        }
    }

    /// An ID token of ours; it may have expired (RP-Initiated Logout §2).
    async fn read_hint(&self, token: &str) -> OAuthResult<IdClaims> {
        let mut validation = Validation::new(self.keys.algorithm());
        validation.set_issuer(&[self.issuer()]);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        self.keys
            .verify::<IdClaims>(token, ID_TOKEN_TYP, validation)
            .await
            .map_err(|e| match e {
                super::keys::VerifyError::Service(s) => s.into(),
                _ => OAuthError::invalid_request(
                    "id_token_hint is not a valid ID token of this issuer",
                ),
            })
    }
}
