//! docs/API.md, the project's HTTP reference, keeps up with the OpenAPI document the code
//! generates: every route the document lists has its row in docs/API.md, and every `code`
//! (or field) a response description names in backticks appears there too. A route or an
//! error code added to the code without its reference text fails here.

use std::collections::BTreeSet;

use serde_json::Value;

fn reference() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md");
    std::fs::read_to_string(path).expect("docs/API.md is readable")
}

fn document() -> Value {
    serde_json::to_value(logicredit_auth::http::openapi::document()).expect("it serialises")
}

/// The backticked snake_case words of a text: `` `invalid_token` `` → `invalid_token`.
fn backticked_words(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[test]
fn every_route_of_the_openapi_document_has_its_row_in_docs_api_md() {
    let reference = reference();
    let spec = document();
    let mut missing = Vec::new();
    let mut routes = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            routes += 1;
            let row = format!("| {} | `{path}` |", method.to_uppercase());
            if !reference.contains(&row) {
                missing.push(row);
            }
        }
    }
    assert!(routes > 30, "the document lists only {routes} routes");
    assert!(
        missing.is_empty(),
        "docs/API.md has no row for: {missing:#?}"
    );
}

#[test]
fn every_code_the_openapi_document_names_is_in_docs_api_md() {
    let reference = reference();
    let spec = document();
    let mut named = BTreeSet::new();
    for item in spec["paths"].as_object().expect("paths").values() {
        for method in METHODS.iter().filter_map(|m| item.get(*m)) {
            let responses = method["responses"].as_object().expect("responses");
            for response in responses.values() {
                let description = response["description"].as_str().unwrap_or_default();
                named.extend(backticked_words(description).into_iter().map(str::to_owned));
            }
        }
    }
    // The codes every route may answer are in the document's description.
    let common = spec["info"]["description"].as_str().unwrap_or_default();
    named.extend(
        common
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|word| word.split_once(' ').map(|(_, code)| code.to_owned()))
            .filter(|code| backticked_words(&format!("`{code}`")).len() == 1),
    );
    for code in [
        "invalid_token",
        "login_ok",
        "mfa_step_up_required",
        "internal_error",
    ] {
        assert!(named.contains(code), "the scan missed `{code}`");
    }
    let missing: Vec<_> = named
        .iter()
        .filter(|code| !reference.contains(&format!("`{code}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "named by /openapi.json, missing from docs/API.md: {missing:?}"
    );
}
