//! Refresh tokens: opaque to clients, rotated on every use, and stored only as the SHA-256
//! of the grant's one live token (`oauth_grants.refresh_hash`). A rotation updates that
//! row in place, so refreshing writes one row of token state, not an insert per token.
//!
//! A token is base64url(grant id ‖ 32 random bytes ‖ tag), the tag a truncated HMAC of the
//! rest under a key derived from the master key. The grant id finds the grant without a
//! row per token; the hash comparison proves the token is the live one; and the tag
//! proves that a token which is *not* live was once issued by us for that grant: a rotated
//! token came back, someone else holds a copy, and the grant is revoked, the newest token
//! included (RFC 9700 §4.14.2). A token whose tag does not verify (forged, or tagged under
//! a master key rotated since) can still be the live one, but is never taken for reuse:
//! knowing a grant's id (`gid`, in every access token) is not enough to revoke it.
//!
//! Tokens issued before migration 9 (43 characters, no grant id) are found through the
//! read-only `oauth_refresh_tokens` table; the same rules apply to them.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::clients::Client;
use super::dpop::DpopProof;
use super::tokens::TokenResponse;
use super::{ErrorCode, OAuth, OAuthError, OAuthResult};
use crate::crypto::{constant_time_eq, hmac_sha256, random_bytes, token_hash};
use crate::domain::{Millis, now_millis};
use crate::services::audit::{AuditEvent, OAuthEvent, RequestContext};
use crate::storage::StorageResult;
use crate::storage::db::oauth::{self as rows, GrantRow};
use crate::storage::db::{Conn, sessions as session_rows, users};

const GRANT_ID: usize = 16;
const SECRET: usize = 32;
const TAG: usize = 16;
const TOKEN_BYTES: usize = GRANT_ID + SECRET + TAG;

/// Issues and reads refresh tokens (see the module header).
#[derive(Clone)]
pub struct RefreshTokenCodec {
    key: [u8; 32],
}

/// What a token of our format says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    grant_id: Uuid,
    /// The tag verified: we issued this token for this grant.
    tagged: bool,
}

impl RefreshTokenCodec {
    pub fn new(master_key: &str) -> Self {
        Self {
            key: crate::crypto::derive_key(master_key, b"logicredit-auth/refresh-token/v1"),
        }
    }

    pub fn issue(&self, grant_id: Uuid) -> String {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[..GRANT_ID].copy_from_slice(grant_id.as_bytes());
        bytes[GRANT_ID..GRANT_ID + SECRET].copy_from_slice(&random_bytes::<SECRET>());
        let tag = hmac_sha256(&self.key, &bytes[..GRANT_ID + SECRET]);
        bytes[GRANT_ID + SECRET..].copy_from_slice(&tag[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// None: not of our format (perhaps a token from before migration 9).
    fn parse(&self, token: &str) -> Option<Parsed> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != TOKEN_BYTES {
            return None;
        }
        let grant_id = Uuid::from_slice(&bytes[..GRANT_ID]).ok()?;
        let tag = hmac_sha256(&self.key, &bytes[..GRANT_ID + SECRET]);
        Some(Parsed {
            grant_id,
            tagged: constant_time_eq(&tag[..TAG], &bytes[GRANT_ID + SECRET..]),
        })
    }
}

/// A presented refresh token and its grant.
pub(super) struct Located {
    pub grant: GrantRow,
    /// The token's hash: the expected value of the rotation's compare-and-set.
    pub hash: String,
    /// It is the grant's live token; otherwise a rotated one of ours came back.
    pub live: bool,
}

impl Located {
    /// The grant is not revoked and the family has not expired.
    pub fn usable(&self, now: Millis) -> bool {
        self.grant.revoked_at.is_none() && self.grant.refresh_expires_at.is_some_and(|e| e > now)
    }
}

impl OAuth {
    /// The grant a refresh token belongs to; None for anything that is not one of ours
    /// (unknown, forged, malformed).
    pub(super) async fn locate_refresh_token(
        &self,
        conn: &impl Conn,
        token: &str,
    ) -> StorageResult<Option<Located>> {
        let hash = token_hash(token);
        let (grant_id, ours) = match self.refresh_tokens.parse(token) {
            Some(parsed) => (parsed.grant_id, parsed.tagged),
            None => match rows::find_legacy_refresh_token(conn, &hash).await? {
                Some(row) => (row.grant_id, true),
                None => return Ok(None),
            },
        };
        let Some(grant) = rows::find_grant(conn, grant_id).await? else {
            return Ok(None);
        };
        let live = grant
            .refresh_hash
            .as_deref()
            .is_some_and(|current| constant_time_eq(current.as_bytes(), hash.as_bytes()));
        Ok((live || ours).then_some(Located { grant, hash, live }))
    }

    /// `grant_type=refresh_token`: one compare-and-set of the grant's live token, in the
    /// transaction of its audit record.
    pub(super) async fn refresh(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        dpop: Option<&DpopProof>,
        ctx: &RequestContext,
    ) -> OAuthResult<TokenResponse> {
        let presented = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
        let now = now_millis();
        let conn = self.db.connection();
        let invalid =
            || OAuthError::invalid_grant("the refresh token is unknown, expired or revoked");
        let located = self
            .locate_refresh_token(conn, presented)
            .await?
            .filter(|l| l.grant.client_id == client.id() && l.usable(now))
            .ok_or_else(invalid)?;
        let mut grant = located.grant.clone();
        // RFC 9449 §5: a public client's refresh token is bound to its DPoP key. Checked
        // before the token is spent or taken for reuse, so a thief without the key can
        // neither burn it nor end the grant.
        if client.is_public()
            && let Some(jkt) = &grant.dpop_jkt
            && dpop.is_none_or(|p| p.jkt != *jkt)
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the refresh token is bound to another DPoP key",
            ));
        }
        if !located.live {
            self.family_reused(client, &grant, "refresh_token", ctx)
                .await?;
            return Err(invalid());
        }
        // Checked before the token is spent: a bad request leaves the client its token.
        if let Some(requested) = params.get("scope") {
            grant.scope = narrowed_scope(&grant.scope, requested)?;
        }
        // The session must still be alive; using its tokens keeps it so (docs/OIDC.md).
        let session = session_rows::find_by_id(conn, grant.session_id)
            .await?
            .ok_or_else(invalid)?;
        let idle_deadline = session.last_seen_at + millis(self.idle_timeout);
        if now >= idle_deadline
            || now >= session.absolute_expires_at
            || !users::can_sign_in(conn, grant.user_id).await?
        {
            return Err(invalid());
        }
        // Rotated on every use, for every client (docs/API.md §8; for fapi2 clients this
        // is stricter than FAPI 2.0 §5.3.2.1 item 10 asks — see docs/FAPI.md). The new
        // access token is bound to the key of this request's proof (the same key for a
        // public client, see above). Signed before the write, so a committed rotation
        // always reaches the client.
        let next = self.refresh_tokens.issue(grant.id);
        grant.dpop_jkt = dpop.map(|p| p.jkt.clone());
        let response = self
            .user_tokens(client, &grant, Some(next.clone()), None)
            .await?;
        let mut uow = self.db.begin().await?;
        if !rows::rotate_refresh_token(uow.conn(), grant.id, &located.hash, &token_hash(&next), now)
            .await?
        {
            // Another use of the same token won the swap: two holders, as above.
            drop(uow);
            self.family_reused(client, &grant, "refresh_token", ctx)
                .await?;
            return Err(invalid());
        }
        // Like a session check, the durable last-seen time is written at most once per
        // touch interval (a third of the idle timeout at most), not on every refresh.
        if now - session.last_seen_at >= millis(self.session_touch_interval) {
            session_rows::touch_by_id(uow.conn(), session.id, now).await?;
        }
        uow.audit(ctx.record(
            AuditEvent::OAuth(OAuthEvent::TokenRefreshed {
                client_id: client.id().to_owned(),
                grant_id: grant.id,
            }),
            Some(grant.user_id),
        ));
        uow.commit().await?;
        Ok(response)
    }

    /// A spent code or a rotated refresh token came back: someone else holds a copy, so
    /// the whole family ends (RFC 9700 §4.14.2, RFC 6749 §4.1.2).
    pub(super) async fn family_reused(
        &self,
        client: &Client,
        grant: &GrantRow,
        presented: &'static str,
        ctx: &RequestContext,
    ) -> OAuthResult<()> {
        let mut uow = self.db.begin().await?;
        rows::revoke_grant(uow.conn(), grant.id, now_millis()).await?;
        uow.audit(ctx.record(
            AuditEvent::OAuth(OAuthEvent::RefreshReuseDetected {
                client_id: client.id().to_owned(),
                grant_id: grant.id,
                presented,
            }),
            Some(grant.user_id),
        ));
        uow.commit().await?;
        metrics::counter!("oauth_refresh_reuse_total", "client_id" => client.id().to_owned())
            .increment(1);
        Ok(())
    }
}

/// RFC 6749 §6: a refresh may ask for fewer scopes than were granted, never more.
fn narrowed_scope(granted: &str, requested: &str) -> OAuthResult<String> {
    let had: BTreeSet<&str> = granted.split_ascii_whitespace().collect();
    let mut narrowed = Vec::new();
    for scope in requested.split_ascii_whitespace() {
        if !had.contains(scope) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope {scope:?} was not granted"),
            ));
        }
        narrowed.push(scope);
    }
    Ok(narrowed.join(" "))
}

fn millis(duration: std::time::Duration) -> Millis {
    duration.as_millis() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> RefreshTokenCodec {
        RefreshTokenCodec::new("0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_token_names_its_grant_and_proves_its_origin() {
        let grant = Uuid::now_v7();
        let token = codec().issue(grant);
        assert_eq!(token.len(), 86, "64 bytes of base64url");
        assert_ne!(token, codec().issue(grant), "each token is random");
        assert_eq!(
            codec().parse(&token),
            Some(Parsed {
                grant_id: grant,
                tagged: true
            })
        );
    }

    #[test]
    fn a_forged_or_foreign_tag_names_the_grant_but_proves_nothing() {
        let grant = Uuid::now_v7();
        let other_key = RefreshTokenCodec::new("fedcba9876543210fedcba9876543210");
        let parsed = codec().parse(&other_key.issue(grant));
        assert_eq!(
            parsed,
            Some(Parsed {
                grant_id: grant,
                tagged: false
            })
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(codec().issue(grant)).unwrap();
        bytes[GRANT_ID] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(!codec().parse(&tampered).unwrap().tagged);
    }

    #[test]
    fn other_shapes_are_not_ours() {
        for token in [
            "",
            "x",
            &crate::crypto::random_token(),
            "!!!!",
            &"A".repeat(86),
        ] {
            let parsed = codec().parse(token);
            assert!(parsed.is_none_or(|p| !p.tagged), "{token:?}");
        }
        assert!(codec().parse(&crate::crypto::random_token()).is_none());
    }

    #[test]
    fn a_refresh_may_narrow_the_scope_but_not_widen_it() {
        assert_eq!(narrowed_scope("openid email", "email").unwrap(), "email");
        assert_eq!(
            narrowed_scope("openid", "openid email").unwrap_err().code,
            ErrorCode::InvalidScope
        );
    }
}
