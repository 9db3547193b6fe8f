//! Table rows as sea-orm entities. Instants are `i64` milliseconds since the epoch (UTC).

pub mod user {
    use sea_orm::entity::prelude::*;

    use crate::domain::{EmailAddress, Role};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub email: EmailAddress,
        pub password_hash: String,
        pub password_pepper_id: Option<String>,
        pub role: Role,
        pub email_verified_at: Option<i64>,
        pub disabled: bool,
        pub created_at: i64,
        pub updated_at: i64,
        /// Set by a password reset while second factors exist; the next login lists them.
        pub factor_review_since: Option<i64>,
        /// The last completed login (`PRIVILEGED_POLICY=pci` disables privileged accounts
        /// unused for `PCI_INACTIVITY_DAYS`; never signed in counts from `created_at`).
        pub last_login_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session {
    use sea_orm::entity::prelude::*;

    use crate::domain::{FirstFactor, MfaMethod, SessionState};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// The public id (shown in session lists); never the token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub token_hash: String,
        pub user_id: Uuid,
        pub state: SessionState,
        pub created_at: i64,
        /// Durable copy of the last activity, refreshed at most once a minute.
        pub last_seen_at: i64,
        pub absolute_expires_at: i64,
        pub mfa_verified_at: Option<i64>,
        pub ip: String,
        pub user_agent: String,
        /// How `mfa_verified_at` was earned.
        pub mfa_method: Option<MfaMethod>,
        /// The user's role changed since this token was issued: the next request
        /// rotates it.
        pub rotate_required: bool,
        /// How the login began: password, or a passwordless passkey.
        pub first_factor: FirstFactor,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod email_token {
    use sea_orm::entity::prelude::*;
    use sea_orm::sea_query::StringLen;

    /// What a token proves when it comes back.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
    pub enum Purpose {
        #[sea_orm(string_value = "verify_email")]
        VerifyEmail,
        #[sea_orm(string_value = "password_reset")]
        PasswordReset,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "email_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub purpose: Purpose,
        #[sea_orm(unique)]
        pub token_hash: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_record {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// Position in the whole trail (export and query order): increasing within each
        /// chain, unique across chains, with gaps where another chain's append rolled back.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// Which of the partitioned chains the record is linked into (see `audit`).
        pub chain: i32,
        /// Position in its chain: 1, 2, 3, … with no gaps.
        pub chain_seq: i64,
        #[sea_orm(unique)]
        pub id: Uuid,
        pub occurred_at: i64,
        pub event: String,
        pub user_id: Option<Uuid>,
        pub actor_id: Option<Uuid>,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        pub request_id: Option<String>,
        /// Canonical JSON text (sorted keys), exactly as hashed.
        pub metadata: String,
        pub prev_hash: String,
        /// Keyed records: hex HMAC-SHA256 under the audit key `key_id`. Legacy records
        /// (written before keying, `key_id` NULL): hex SHA-256.
        pub hash: String,
        pub key_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_checkpoint {
    use sea_orm::entity::prelude::*;

    /// A signed statement "record `seq` of the trail, the head of chain `chain`, has hash
    /// `head_hash`".
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_checkpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub chain: i32,
        pub head_hash: String,
        pub created_at: i64,
        pub key_id: String,
        /// Hex HMAC-SHA256 under the audit key `key_id` (see `audit::checkpoint_message`).
        pub mac: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_anchor {
    use sea_orm::entity::prelude::*;

    /// A signed statement of every chain's head at one moment (see `audit`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_anchors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub created_at: i64,
        /// JSON array of `[chain, chain_seq, seq, hash]`, one per chain, by chain.
        pub heads: String,
        pub key_id: String,
        /// Hex HMAC-SHA256 under the audit key `key_id` (see `audit::anchor_message`).
        pub mac: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outbox_email {
    use sea_orm::entity::prelude::*;
    use sea_orm::sea_query::StringLen;

    /// Where a queued email is in its delivery.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
    pub enum Status {
        #[sea_orm(string_value = "pending")]
        Pending,
        #[sea_orm(string_value = "sent")]
        Sent,
        /// Refused permanently, or out of attempts: no more tries.
        #[sea_orm(string_value = "failed")]
        Failed,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "email_outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub created_at: i64,
        pub kind: String,
        pub recipient: String,
        pub subject: String,
        /// Erased once delivered: a token must not outlive its delivery in the database.
        pub body_text: String,
        pub body_html: String,
        pub status: Status,
        pub attempts: i32,
        pub next_attempt_at: i64,
        pub locked_until: Option<i64>,
        pub sent_at: Option<i64>,
        pub last_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod totp_credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "totp_credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// AEAD ciphertext with its key id (see `crypto::secrets`).
        pub secret_ciphertext: String,
        /// Null while the enrollment waits for its first code.
        pub enabled_at: Option<i64>,
        /// The last accepted time step: it and every earlier one are refused.
        pub last_used_step: Option<i64>,
        pub created_at: i64,
        /// The session that started a pending setup: only it may confirm the setup.
        pub pending_session_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod recovery_code {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recovery_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        #[sea_orm(unique)]
        pub code_hash: String,
        pub created_at: i64,
        pub used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webauthn_credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webauthn_credentials")]
    pub struct Model {
        /// The public id used by the API (list, delete).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        /// The authenticator's credential id, base64url: how an assertion finds its key.
        #[sea_orm(unique)]
        pub credential_id: String,
        pub name: String,
        /// The serialised passkey (public key, counter, flags), encrypted.
        pub passkey_ciphertext: String,
        pub sign_count: i64,
        pub created_at: i64,
        pub last_used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod oauth_signing_key {
    use sea_orm::entity::prelude::*;

    /// A key the provider signs tokens with; the private half sealed under the master key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        pub alg: String,
        pub private_key: String,
        pub public_jwk: String,
        pub created_at: i64,
        /// When a newer key replaced it; it stays published until its tokens expired.
        pub retired_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod oauth_client {
    use sea_orm::entity::prelude::*;

    /// A client registered through the admin API (file clients live in memory only).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub client_id: String,
        /// The validated RFC 7591 metadata as JSON (never the secret).
        pub metadata: String,
        pub secret_hash: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod oauth_grant {
    use sea_orm::entity::prelude::*;

    /// One authorization of a client by a user in a session: the family its tokens share.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_grants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub client_id: String,
        pub user_id: Uuid,
        pub session_id: Uuid,
        pub scope: String,
        pub audience: String,
        pub auth_time: i64,
        pub acr: String,
        /// JSON array of RFC 8176 values.
        pub amr: String,
        pub authorization_details: Option<String>,
        pub tx_hash: Option<String>,
        pub dpop_jkt: Option<String>,
        pub created_at: i64,
        pub revoked_at: Option<i64>,
        /// SHA-256 of the grant's one live refresh token; None when the client may not
        /// refresh. Rotation replaces it in place (migration 9).
        pub refresh_hash: Option<String>,
        pub refresh_issued_at: Option<i64>,
        pub refresh_expires_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod oauth_refresh_token {
    use sea_orm::entity::prelude::*;

    /// Refresh tokens issued before migration 9, read only: see that migration.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub grant_id: Uuid,
        pub created_at: i64,
        pub expires_at: i64,
        /// Set when it was exchanged: a second use is reuse.
        pub used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod oauth_consent {
    use sea_orm::entity::prelude::*;

    /// The scopes a user has allowed a client; a request within them needs no consent step.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_consents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub client_id: String,
        pub scope: String,
        pub granted_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod known_device {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "known_devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// Hex HMAC of browser family, OS and network prefix (`services::new_device`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub device_key: String,
        pub first_seen_at: i64,
        pub last_seen_at: i64,
        /// The last new-device alert sent for it: the flood guard.
        pub last_alert_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod password_history {
    use sea_orm::entity::prelude::*;

    /// A previous password of an account (PHC string), kept under `PRIVILEGED_POLICY=pci`
    /// so that a new one cannot repeat the last four (PCI DSS 8.3.7).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "password_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub password_hash: String,
        pub password_pepper_id: Option<String>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
