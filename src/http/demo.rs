//! The development-only passkey demo page (`/demo`), built in its own change.

use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
