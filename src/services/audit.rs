//! Audit events (API.md §4) and who/where they came from.

use serde_json::Value;
use uuid::Uuid;

use crate::domain::now_millis;
use crate::storage::db::audit::NewAuditRecord;

/// Every auditable event, named exactly as API.md §4 lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    UserRegistered,
    EmailVerificationSent,
    EmailVerified,
    LoginSuccess,
    LoginFailure,
    LoginLocked,
    SessionCreated,
    SessionRotated,
    SessionLogout,
    SessionRevoked,
    CsrfFailure,
    RateLimitExceeded,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::UserRegistered => "user.registered",
            AuditEvent::EmailVerificationSent => "email.verification_sent",
            AuditEvent::EmailVerified => "email.verified",
            AuditEvent::LoginSuccess => "login.success",
            AuditEvent::LoginFailure => "login.failure",
            AuditEvent::LoginLocked => "login.locked",
            AuditEvent::SessionCreated => "session.created",
            AuditEvent::SessionRotated => "session.rotated",
            AuditEvent::SessionLogout => "session.logout",
            AuditEvent::SessionRevoked => "session.revoked",
            AuditEvent::CsrfFailure => "csrf.failure",
            AuditEvent::RateLimitExceeded => "rate_limit.exceeded",
        }
    }
}

/// Where a request came from, for audit records and session metadata.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

impl RequestContext {
    pub fn record(
        &self,
        event: AuditEvent,
        user_id: Option<Uuid>,
        metadata: Value,
    ) -> NewAuditRecord {
        NewAuditRecord {
            event: event.as_str(),
            occurred_at: now_millis(),
            user_id,
            actor_id: user_id,
            ip: Some(self.ip.clone()).filter(|s| !s.is_empty()),
            user_agent: Some(self.user_agent.clone()).filter(|s| !s.is_empty()),
            request_id: Some(self.request_id.clone()).filter(|s| !s.is_empty()),
            metadata,
        }
    }

    /// A record of something an actor did to another user (admin actions).
    pub fn record_for(
        &self,
        event: AuditEvent,
        target: Uuid,
        actor: Uuid,
        metadata: Value,
    ) -> NewAuditRecord {
        NewAuditRecord {
            user_id: Some(target),
            actor_id: Some(actor),
            ..self.record(event, Some(target), metadata)
        }
    }
}
