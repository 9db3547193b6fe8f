//! The OpenAPI document (completed route by route as the API grows).

use axum::Json;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

pub fn document() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Logicredit Auth")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Authentication service for banking workloads. The binding contract is API.md.",
                ))
                .build(),
        )
        .build()
}

pub async fn spec() -> Json<OpenApi> {
    Json(document())
}
