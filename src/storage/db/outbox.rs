//! The `email_outbox` table: emails queued in the transaction of the change that causes
//! them, claimed by one worker at a time through a lease, erased once delivered.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, Condition, QueryOrder, QuerySelect};

use super::entities::outbox_email::{self, Status};
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use outbox_email::Model as OutboxRow;

/// One email to queue: plain text and HTML alternatives.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub recipient: String,
    /// A stable name for metrics and the outbox row (`verify_email`, `password_reset`, …).
    pub kind: &'static str,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub async fn insert_all(conn: &impl Conn, emails: Vec<NewEmail>) -> StorageResult<()> {
    let now = crate::domain::now_millis();
    for email in emails {
        outbox_email::ActiveModel {
            id: Set(Uuid::now_v7()),
            created_at: Set(now),
            kind: Set(email.kind.to_owned()),
            recipient: Set(email.recipient),
            subject: Set(email.subject),
            body_text: Set(email.text),
            body_html: Set(email.html),
            status: Set(Status::Pending),
            attempts: Set(0),
            next_attempt_at: Set(now),
            locked_until: Set(None),
            sent_at: Set(None),
            last_error: Set(None),
        }
        .insert(conn)
        .await
        .storage()?;
    }
    Ok(())
}

fn unleased(now: Millis) -> Condition {
    Condition::any()
        .add(outbox_email::Column::LockedUntil.is_null())
        .add(outbox_email::Column::LockedUntil.lt(now))
}

/// Claims up to `limit` due emails for `lease_ms`. The claim is a conditional update per
/// row, so when several instances poll at once each email goes to exactly one of them.
pub async fn claim_due(
    conn: &impl Conn,
    now: Millis,
    lease_ms: i64,
    limit: u64,
) -> StorageResult<Vec<OutboxRow>> {
    let candidates = outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(Status::Pending))
        .filter(outbox_email::Column::NextAttemptAt.lte(now))
        .filter(unleased(now))
        .order_by_asc(outbox_email::Column::CreatedAt)
        .limit(limit)
        .all(conn)
        .await
        .storage()?;
    let mut claimed = Vec::with_capacity(candidates.len());
    for email in candidates {
        let result = outbox_email::Entity::update_many()
            .col_expr(
                outbox_email::Column::LockedUntil,
                Expr::value(now + lease_ms),
            )
            .filter(outbox_email::Column::Id.eq(email.id))
            .filter(outbox_email::Column::Status.eq(Status::Pending))
            .filter(unleased(now))
            .exec(conn)
            .await
            .storage()?;
        if result.rows_affected == 1 {
            claimed.push(email);
        }
    }
    Ok(claimed)
}

/// Delivered: the body (which may hold a token) is erased; metadata stays.
pub async fn mark_sent(conn: &impl Conn, id: Uuid, now: Millis) -> StorageResult<()> {
    outbox_email::Entity::update_many()
        .col_expr(outbox_email::Column::Status, Expr::value(Status::Sent))
        .col_expr(outbox_email::Column::SentAt, Expr::value(now))
        .col_expr(outbox_email::Column::BodyText, Expr::value(""))
        .col_expr(outbox_email::Column::BodyHtml, Expr::value(""))
        .col_expr(
            outbox_email::Column::LockedUntil,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(
            outbox_email::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(outbox_email::Column::Id.eq(id))
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}

/// A failed attempt: retry at `retry_at`, or give up (`permanent`) and erase the body.
pub async fn mark_failed(
    conn: &impl Conn,
    id: Uuid,
    attempts: i32,
    error: &str,
    retry_at: Option<Millis>,
) -> StorageResult<()> {
    let mut update = outbox_email::Entity::update_many()
        .col_expr(outbox_email::Column::Attempts, Expr::value(attempts))
        .col_expr(outbox_email::Column::LastError, Expr::value(error))
        .col_expr(
            outbox_email::Column::LockedUntil,
            Expr::value(Option::<i64>::None),
        );
    update = match retry_at {
        Some(at) => update.col_expr(outbox_email::Column::NextAttemptAt, Expr::value(at)),
        None => update
            .col_expr(outbox_email::Column::Status, Expr::value(Status::Failed))
            .col_expr(outbox_email::Column::BodyText, Expr::value(""))
            .col_expr(outbox_email::Column::BodyHtml, Expr::value("")),
    };
    update
        .filter(outbox_email::Column::Id.eq(id))
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}

pub async fn pending_count(conn: &impl Conn) -> StorageResult<u64> {
    use sea_orm::PaginatorTrait;
    outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(Status::Pending))
        .count(conn)
        .await
        .storage()
}
