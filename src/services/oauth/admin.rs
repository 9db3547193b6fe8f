//! The admin API's use cases for clients (`/auth/admin/oauth-clients`): database clients
//! can be created, replaced and deleted; file clients are listed but read-only. Secrets
//! are generated here, shown once, and stored as hashes. Every change is audited
//! (`oauth.client_changed`).

use serde::Serialize;
use uuid::Uuid;

use super::OAuth;
use super::clients::{self, Client, ClientMetadata, ClientSource};
use crate::crypto::{random_token, token_hash};
use crate::domain::now_millis;
use crate::services::audit::{AuditEvent, OAuthEvent, RequestContext};
use crate::services::{ServiceError, ServiceResult};
use crate::storage::db::oauth::{self as rows, ClientRow};

/// A client as the admin API shows it: its metadata and where it was registered.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    #[serde(flatten)]
    pub metadata: ClientMetadata,
    pub source: ClientSource,
}

impl From<&Client> for ClientView {
    fn from(client: &Client) -> Self {
        Self {
            metadata: client.metadata.clone(),
            source: client.source,
        }
    }
}

impl OAuth {
    pub async fn list_clients(&self) -> ServiceResult<Vec<ClientView>> {
        let mut all: Vec<ClientView> = self.clients.file_clients().map(ClientView::from).collect();
        for row in rows::list_clients(self.db.connection()).await? {
            if self.clients.is_file_client(&row.client_id) {
                continue;
            }
            if let Some(client) = clients::database_client(row) {
                all.push(ClientView::from(&client));
            }
        }
        all.sort_by(|a, b| a.metadata.client_id.cmp(&b.metadata.client_id));
        Ok(all)
    }

    pub async fn get_client(&self, client_id: &str) -> ServiceResult<ClientView> {
        let client = self
            .clients
            .find(client_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(ClientView::from(&client))
    }

    /// Registers a client; returns its secret (once) when its method uses one.
    pub async fn create_client(
        &self,
        metadata: ClientMetadata,
        admin: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<(ClientView, Option<String>)> {
        if self.clients.is_file_client(&metadata.client_id) {
            return Err(ServiceError::ClientExists);
        }
        let secret = metadata
            .token_endpoint_auth_method
            .uses_secret()
            .then(random_token);
        let problems = clients::validate(&metadata, secret.is_some());
        if !problems.is_empty() {
            return Err(ServiceError::InvalidClientMetadata(problems));
        }
        let now = now_millis();
        let row = ClientRow {
            client_id: metadata.client_id.clone(),
            metadata: serde_json::to_string(&metadata).map_err(anyhow::Error::from)?,
            secret_hash: secret.as_deref().map(token_hash),
            created_at: now,
            updated_at: now,
        };
        let mut uow = self.db.begin().await?;
        if !rows::insert_client(uow.conn(), row).await? {
            return Err(ServiceError::ClientExists);
        }
        uow.audit(ctx.record(changed(&metadata.client_id, "created"), Some(admin)));
        uow.commit().await?;
        Ok((
            ClientView {
                metadata,
                source: ClientSource::Database,
            },
            secret,
        ))
    }

    /// Replaces a database client's metadata (the id stays). A secret is generated when
    /// the new method needs one and none exists, or when `rotate_secret` asks for it;
    /// rotating revokes the client's grants.
    pub async fn update_client(
        &self,
        client_id: &str,
        mut metadata: ClientMetadata,
        rotate_secret: bool,
        admin: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<(ClientView, Option<String>)> {
        if self.clients.is_file_client(client_id) {
            return Err(ServiceError::ClientNotChangeable("file client"));
        }
        let conn = self.db.connection();
        let existing = rows::find_client(conn, client_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        metadata.client_id = client_id.to_owned();
        let uses_secret = metadata.token_endpoint_auth_method.uses_secret();
        let new_secret =
            (uses_secret && (rotate_secret || existing.secret_hash.is_none())).then(random_token);
        let problems = clients::validate(&metadata, uses_secret);
        if !problems.is_empty() {
            return Err(ServiceError::InvalidClientMetadata(problems));
        }
        let secret_hash = match (&new_secret, uses_secret) {
            (Some(secret), _) => Some(Some(token_hash(secret))),
            (None, false) => Some(None),
            (None, true) => None,
        };
        let now = now_millis();
        let mut uow = self.db.begin().await?;
        let json = serde_json::to_string(&metadata).map_err(anyhow::Error::from)?;
        if !rows::update_client(uow.conn(), client_id, &json, secret_hash, now).await? {
            return Err(ServiceError::NotFound);
        }
        if new_secret.is_some() && existing.secret_hash.is_some() {
            rows::revoke_client_grants(uow.conn(), client_id, now).await?;
        }
        uow.audit(ctx.record(changed(client_id, "updated"), Some(admin)));
        uow.commit().await?;
        Ok((
            ClientView {
                metadata,
                source: ClientSource::Database,
            },
            new_secret,
        ))
    }

    /// Deletes a database client and revokes every grant it holds.
    pub async fn delete_client(
        &self,
        client_id: &str,
        admin: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        if self.clients.is_file_client(client_id) {
            return Err(ServiceError::ClientNotChangeable("file client"));
        }
        let mut uow = self.db.begin().await?;
        if !rows::delete_client(uow.conn(), client_id).await? {
            return Err(ServiceError::NotFound);
        }
        rows::revoke_client_grants(uow.conn(), client_id, now_millis()).await?;
        uow.audit(ctx.record(changed(client_id, "deleted"), Some(admin)));
        uow.commit().await?;
        Ok(())
    }
}

fn changed(client_id: &str, change: &'static str) -> AuditEvent {
    AuditEvent::OAuth(OAuthEvent::ClientChanged {
        client_id: client_id.to_owned(),
        change,
    })
}
