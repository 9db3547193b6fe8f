//! Packaging and developer-experience artefacts stay in step with the code:
//!
//! - docker-compose.yml configures `api` only with variables documented in .env.example,
//!   and that configuration is one the service accepts;
//! - postman_collection.json has a request for every route the router serves, and no
//!   request for a route that does not exist;
//! - the Dockerfile starts `logicredit-auth serve`, and its HEALTHCHECK really works against
//!   the built binary started exactly as the image starts it.
//!
//! No network: files are parsed with serde_json and small line-based parsers written for
//! our own files (not general YAML/Dockerfile parsers).

// Tests stop loudly: unwrap, expect and panic are how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Routes that are deliberately not in the Postman collection, with the reason. Every
/// entry must name a real route (checked), so this list cannot silently go stale.
/// Format: (METHOD, path as written in the router, reason).
const NOT_IN_COLLECTION: &[(&str, &str, &str)] = &[];

const HTTP_METHODS: &[&str] = &[
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// --- .env.example -------------------------------------------------------------------------

/// Variable names documented in .env.example: `NAME=…` and commented-out `# NAME=…` lines.
fn documented_variables() -> BTreeSet<String> {
    read(".env.example")
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix('#').map_or(line, str::trim_start);
            let (name, _) = line.split_once('=')?;
            let is_name = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| name.to_owned())
        })
        .collect()
}

// --- docker-compose.yml -------------------------------------------------------------------

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `key:` or `key: value` on a YAML line (comment and blank lines are skipped by callers).
fn mapping_key(line: &str) -> Option<&str> {
    let text = line.trim_start();
    let (key, rest) = text.split_once(':')?;
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && (rest.is_empty() || rest.starts_with(' '))).then_some(key)
}

/// The lines nested under the mapping path `path` (e.g. services → api → environment), for
/// block-style YAML as our compose file uses it.
fn yaml_block<'a>(text: &'a str, path: &[&str]) -> Vec<&'a str> {
    let mut stack: Vec<(usize, &str)> = Vec::new();
    let mut found = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = indentation(line);
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let inside =
            stack.len() >= path.len() && stack.iter().zip(path).all(|((_, key), want)| key == want);
        if inside {
            lines.push(line);
        }
        if let Some(key) = mapping_key(line) {
            stack.push((indent, key));
            if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), w)| k == w) {
                found = true;
            }
        }
    }
    assert!(found, "docker-compose.yml has no {}", path.join(" → "));
    lines
}

/// A scalar's value: the text between quotes, or a plain scalar up to a ` #` comment.
fn unquote(value: &str) -> String {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            let end = rest
                .find(quote)
                .unwrap_or_else(|| panic!("unterminated quote in {value:?}"));
            return rest[..end].to_owned();
        }
    }
    value.split(" #").next().unwrap_or("").trim_end().to_owned()
}

/// The `environment:` of a compose service, in map form (`NAME: value`) or list form
/// (`- NAME=value`).
fn compose_environment(service: &str) -> Vec<(String, String)> {
    let text = read("docker-compose.yml");
    let lines = yaml_block(&text, &["services", service, "environment"]);
    assert!(!lines.is_empty(), "services.{service}.environment is empty");
    let top = lines.iter().map(|l| indentation(l)).min().unwrap_or(0);
    lines
        .iter()
        .filter(|l| indentation(l) == top)
        .map(|line| {
            let text = line.trim();
            if let Some(item) = text.strip_prefix("- ") {
                let item = unquote(item);
                let (name, value) = item.split_once('=').unwrap_or((&item, ""));
                (name.to_owned(), value.to_owned())
            } else {
                let (name, value) = text
                    .split_once(':')
                    .unwrap_or_else(|| panic!("unexpected environment line {line:?}"));
                (name.trim().to_owned(), unquote(value))
            }
        })
        .collect()
}

/// Compose interpolation as it applies with nothing set in the shell: `${NAME:-default}`
/// and `${NAME-default}` become the default.
fn interpolate_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("unterminated ${{ in {value:?}"));
        let inner = &rest[start + 2..end];
        let default = inner
            .split_once(":-")
            .or_else(|| inner.split_once('-'))
            .map_or("", |(_, d)| d);
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn compose_api_uses_only_documented_variables() {
    let documented = documented_variables();
    assert!(
        documented.len() > 20 && documented.contains("DATABASE_URL"),
        ".env.example parsing found too little: {documented:?}"
    );
    let environment = compose_environment("api");
    let undocumented: Vec<&str> = environment
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !documented.contains(*name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docker-compose.yml sets {undocumented:?} for api, which .env.example does not document"
    );
    let names: BTreeSet<&str> = environment.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        environment.len(),
        "a variable is set twice for api"
    );
}

#[test]
fn compose_api_configuration_is_a_coherent_development_stack() {
    let vars: HashMap<String, String> = compose_environment("api")
        .into_iter()
        .map(|(name, value)| (name, interpolate_defaults(&value)))
        .collect();
    let get = |name: &str| vars.get(name).map(String::as_str).unwrap_or_default();
    assert_eq!(get("APP_ENV"), "development");
    assert!(get("DATABASE_URL").starts_with("postgres://"));
    assert!(get("DATABASE_URL").contains("@postgres:5432/"));
    assert_eq!(get("REDIS_URL"), "redis://redis:6379");
    assert_eq!(
        (get("SMTP_HOST"), get("SMTP_PORT"), get("SMTP_TLS")),
        ("mailpit", "1025", "none")
    );
    assert_eq!(get("ORIGIN_URL"), "http://localhost:8000");
    assert!(get("BIND_ADDR").starts_with("0.0.0.0:"));
    assert!(
        get("TOTP_ENCRYPTION_KEY").chars().count() >= 32,
        "the placeholder key must have at least 32 characters"
    );

    // The service accepts exactly this configuration (no key generated: it is given) …
    let settings = logicredit_auth::configuration::Settings::from_vars(&vars)
        .unwrap_or_else(|e| panic!("the compose configuration is refused: {e}"));
    assert!(!settings.is_production());
    assert!(settings.session.cookie_secure);
    assert_eq!(settings.session.cookie_name, "__Host-session");
    // … and production mode would refuse it, which is why the stack is a development one.
    let mut production = vars.clone();
    production.insert("APP_ENV".to_owned(), "production".to_owned());
    let refused = logicredit_auth::configuration::Settings::from_vars(&production)
        .expect_err("production must refuse SMTP_TLS=none to mailpit")
        .to_string();
    assert!(refused.contains("SMTP_TLS"), "{refused}");

    let compose = read("docker-compose.yml");
    for service in ["api", "postgres", "redis", "mailpit"] {
        let lines = yaml_block(&compose, &["services", service]);
        assert!(!lines.is_empty(), "service {service} is empty");
    }
    for dependency in ["postgres", "redis"] {
        let condition = yaml_block(&compose, &["services", "api", "depends_on", dependency]);
        assert!(
            condition
                .iter()
                .any(|l| l.trim() == "condition: service_healthy"),
            "api must wait for {dependency} to be healthy"
        );
        let healthcheck = yaml_block(&compose, &["services", dependency, "healthcheck"]);
        assert!(
            healthcheck
                .iter()
                .any(|l| l.trim_start().starts_with("test:")),
            "{dependency} needs a healthcheck for service_healthy"
        );
    }
    let postgres = yaml_block(&compose, &["services", "postgres"]).join("\n");
    assert!(postgres.contains("image: postgres:15") && postgres.contains("pg_isready"));
    let redis = yaml_block(&compose, &["services", "redis"]).join("\n");
    assert!(redis.contains("image: redis:7"));
    let mailpit = yaml_block(&compose, &["services", "mailpit"]).join("\n");
    assert!(mailpit.contains("image: axllent/mailpit"));
    assert!(mailpit.contains(":1025") && mailpit.contains(":8025"));
}

/// The HA profile: two API instances that find Redis through three sentinels, behind a
/// load balancer that is the only trusted proxy; every piece is in the `ha` profile.
#[test]
fn compose_ha_profile_runs_two_instances_on_sentinel_behind_a_load_balancer() {
    let documented = documented_variables();
    let environment = compose_environment("api-ha-1");
    let undocumented: Vec<&str> = environment
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !documented.contains(*name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "api-ha-1 sets undocumented {undocumented:?}"
    );
    let vars: HashMap<String, String> = environment
        .into_iter()
        .map(|(name, value)| (name, interpolate_defaults(&value)))
        .collect();
    let settings = logicredit_auth::configuration::Settings::from_vars(&vars)
        .unwrap_or_else(|e| panic!("the HA configuration is refused: {e}"));
    let Some(logicredit_auth::configuration::RedisTopology::Sentinel(sentinel)) = &settings.redis
    else {
        panic!("the HA instances must use Sentinel: {:?}", settings.redis)
    };
    assert_eq!(
        sentinel.sentinels,
        ["sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"]
    );
    assert_eq!(sentinel.master_name, "mymaster");

    let compose = read("docker-compose.yml");
    for service in [
        "redis-primary",
        "redis-replica",
        "sentinel-1",
        "api-ha-1",
        "lb",
    ] {
        let lines = yaml_block(&compose, &["services", service]);
        assert!(
            lines.iter().any(|l| l.trim() == "profiles: [ha]"),
            "{service} must be in the ha profile only"
        );
    }
    for alias in [
        "sentinel-2: *sentinel",
        "sentinel-3: *sentinel",
        "environment: *api-ha-environment",
    ] {
        assert!(
            compose.contains(alias),
            "docker-compose.yml lacks {alias:?}"
        );
    }
    let replica = yaml_block(&compose, &["services", "redis-replica"]).join("\n");
    assert!(replica.contains("\"--replicaof\", \"redis-primary\", \"6379\""));
    let lb = yaml_block(&compose, &["services", "lb"]).join("\n");
    assert!(
        lb.contains("ipv4_address: 172.28.0.10") && vars["TRUSTED_PROXIES"] == "172.28.0.10/32"
    );

    let sentinel_conf = read("deploy/ha/sentinel.conf");
    assert!(sentinel_conf.contains("sentinel monitor mymaster redis-primary 6379 2"));
    let nginx = read("deploy/ha/nginx.conf");
    for upstream in ["server api-ha-1:8000", "server api-ha-2:8000"] {
        assert!(nginx.contains(upstream), "nginx.conf lacks {upstream}");
    }
    assert!(nginx.contains("proxy_set_header X-Forwarded-For $remote_addr;"));
}

// --- Routes -------------------------------------------------------------------------------

use logicredit_auth::http::{RouteEntry, RouteKind};

/// Every route the service serves, as the library lists it (`http::route_table()`, built
/// from the same lists as the routers).
fn router_routes() -> Vec<RouteEntry> {
    logicredit_auth::http::route_table()
}

/// A path with its parameters normalised: `{id}`, `:id` and `{{VAR}}` segments become
/// `{}`; a trailing `{*rest}` stays as `{*}`.
fn normalise(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let trailing_slash = path.len() > 1 && path.ends_with('/');
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|segment| {
            if segment.starts_with("{*") {
                "{*}".to_owned()
            } else if segment.starts_with(':')
                || (segment.starts_with("{{") && segment.ends_with("}}"))
                || (segment.starts_with('{') && segment.ends_with('}'))
            {
                "{}".to_owned()
            } else {
                segment.to_owned()
            }
        })
        .collect();
    if trailing_slash {
        segments.push(String::new());
    }
    format!("/{}", segments.join("/"))
}

/// Does a request path (normalised) hit this route pattern (normalised)?
fn route_matches(pattern: &str, request: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("{*}") {
        // `/docs/{*rest}`: one or more further characters after the prefix.
        return request.len() > prefix.len() && request.starts_with(prefix);
    }
    let pattern: Vec<&str> = pattern.split('/').collect();
    let request: Vec<&str> = request.split('/').collect();
    pattern.len() == request.len()
        && pattern
            .iter()
            .zip(&request)
            .all(|(p, r)| p == r || (*p == "{}" && !r.is_empty()))
}

// --- postman_collection.json --------------------------------------------------------------

#[derive(Debug)]
struct PostmanRequest {
    name: String,
    /// `BASE_URL` (the public listener) or `METRICS_URL` (the metrics listener).
    listener: &'static str,
    method: String,
    path: String,
    headers: Vec<String>,
    tests: String,
}

fn collection() -> Value {
    serde_json::from_str(&read("postman_collection.json")).expect("postman_collection.json is JSON")
}

fn postman_requests(items: &Value, folder: &str, out: &mut Vec<PostmanRequest>) {
    for item in items.as_array().expect("item is an array") {
        let name = item["name"].as_str().unwrap_or("?");
        let full = if folder.is_empty() {
            name.to_owned()
        } else {
            format!("{folder} / {name}")
        };
        if let Some(children) = item.get("item") {
            postman_requests(children, &full, out);
            continue;
        }
        let request = &item["request"];
        let raw = match &request["url"] {
            Value::String(raw) => raw.clone(),
            url => url["raw"].as_str().unwrap_or_default().to_owned(),
        };
        let (listener, path) = ["BASE_URL", "METRICS_URL"]
            .into_iter()
            .find_map(|base| Some((base, raw.strip_prefix(&format!("{{{{{base}}}}}"))?)))
            .unwrap_or_else(|| {
                panic!("{full}: the URL {raw:?} starts with neither {{{{BASE_URL}}}} nor {{{{METRICS_URL}}}}")
            });
        let headers = request["header"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter(|h| h["disabled"] != Value::Bool(true))
                    .filter_map(|h| h["key"].as_str().map(str::to_ascii_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        let tests = item["event"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e["listen"] == "test")
                    .flat_map(|e| e["script"]["exec"].as_array().cloned().unwrap_or_default())
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        out.push(PostmanRequest {
            name: full,
            listener,
            method: request["method"].as_str().unwrap_or("GET").to_uppercase(),
            path: path.to_owned(),
            headers,
            tests,
        });
    }
}

/// A request reaches a route only on the route's listener: `/metrics` on METRICS_URL,
/// everything else on BASE_URL.
fn same_listener(route: &RouteEntry, request: &PostmanRequest) -> bool {
    (route.kind == RouteKind::Metrics) == (request.listener == "METRICS_URL")
}

fn all_postman_requests() -> Vec<PostmanRequest> {
    let mut requests = Vec::new();
    postman_requests(&collection()["item"], "", &mut requests);
    requests
}

#[test]
fn postman_collection_has_one_request_per_route_and_no_others() {
    // The hosted pages are for browsers, driven by tests/e2e/ui.spec.mjs; the collection
    // is for the API.
    let routes: Vec<RouteEntry> = router_routes()
        .into_iter()
        .filter(|r| r.kind != RouteKind::Ui)
        .collect();
    assert!(routes.len() >= 30, "too few routes parsed: {routes:#?}");
    let requests = all_postman_requests();

    for (method, path, reason) in NOT_IN_COLLECTION {
        assert!(
            routes
                .iter()
                .any(|r| r.method == *method && r.path == *path),
            "NOT_IN_COLLECTION lists {method} {path} ({reason}), which is not a route"
        );
    }

    let mut errors = Vec::new();
    for request in &requests {
        let target = normalise(&request.path);
        let hits = routes
            .iter()
            .filter(|r| {
                r.method == request.method
                    && same_listener(r, request)
                    && route_matches(&normalise(&r.path), &target)
            })
            .count();
        if hits == 0 {
            errors.push(format!(
                "request {:?}: {} {} matches no route",
                request.name, request.method, request.path
            ));
        }
    }
    for route in &routes {
        let excluded = NOT_IN_COLLECTION
            .iter()
            .any(|(m, p, _)| *m == route.method && *p == route.path);
        let covered = requests.iter().any(|request| {
            request.method == route.method
                && same_listener(route, request)
                && route_matches(&normalise(&route.path), &normalise(&request.path))
        });
        if !covered && !excluded {
            errors.push(format!(
                "route {} {} ({:?}) has no request in postman_collection.json",
                route.method, route.path, route.kind
            ));
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));

    // Every route also has a request in the hand-run folders, not only in the CI flow.
    let manual: Vec<&PostmanRequest> = requests
        .iter()
        .filter(|r| !r.name.starts_with("CI flow /"))
        .collect();
    let uncovered: Vec<String> = routes
        .iter()
        .filter(|route| {
            !manual.iter().any(|request| {
                request.method == route.method
                    && same_listener(route, request)
                    && route_matches(&normalise(&route.path), &normalise(&request.path))
            })
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        uncovered.is_empty(),
        "no request outside the CI flow for {uncovered:?}"
    );
}

#[test]
fn postman_collection_structure_variables_and_csrf() {
    let collection = collection();
    assert_eq!(
        collection["info"]["schema"],
        "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    );
    let folders: Vec<&str> = collection["item"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    for folder in [
        "Health",
        "Registration",
        "Login & sessions",
        "MFA",
        "Passkeys",
        "Passwords",
        "Admin",
        "Docs",
        "CI flow",
    ] {
        assert!(folders.contains(&folder), "no folder {folder:?}");
    }

    let variables: BTreeMap<String, String> = collection["variable"]
        .as_array()
        .expect("collection variables")
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap_or_default().to_owned(),
                v["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(variables["BASE_URL"], "http://localhost:8000");
    // The metrics listener: METRICS_ADDR as docker-compose.yml publishes it.
    assert_eq!(variables["METRICS_URL"], "http://localhost:9100");
    for name in [
        "EMAIL_TOKEN",
        "RESET_TOKEN",
        "CSRF_TOKEN",
        "EMAIL",
        "PASSWORD",
    ] {
        assert!(
            variables.contains_key(name),
            "no collection variable {name}"
        );
    }

    // Every {{VAR}} used is declared, or set by a script (no typos).
    let text = read("postman_collection.json");
    let mut used = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("unterminated {{");
        used.insert(after[..end].to_owned());
        rest = &after[end + 2..];
    }
    for name in used {
        let set_by_script = text.contains(&format!("set('{name}'"));
        assert!(
            variables.contains_key(&name) || set_by_script,
            "{{{{{name}}}}} is used but neither declared nor set by a script"
        );
    }

    // The collection captures csrf_token from every response that has one.
    let events = collection["event"].to_string();
    assert!(
        events.contains("csrf_token") && events.contains("collectionVariables.set('CSRF_TOKEN'")
    );

    // Every request to a route that takes the CSRF header (per the OpenAPI document) sends
    // it, unless the request is there to show that a missing token is refused.
    let document = serde_json::to_value(logicredit_auth::http::openapi::document())
        .expect("the OpenAPI document serialises");
    let mut csrf_routes = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in HTTP_METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            if operation["security"].to_string().contains("csrf_header") {
                csrf_routes.push((method.to_uppercase(), normalise(path)));
            }
        }
    }
    assert!(
        csrf_routes.len() >= 15,
        "too few CSRF routes: {csrf_routes:?}"
    );
    for request in all_postman_requests() {
        let needs_csrf = csrf_routes.iter().any(|(method, pattern)| {
            *method == request.method && route_matches(pattern, &normalise(&request.path))
        });
        if needs_csrf && !request.headers.iter().any(|h| h == "x-csrf-token") {
            assert!(
                request.tests.contains("csrf_failed"),
                "{:?} ({} {}) sends no X-CSRF-Token",
                request.name,
                request.method,
                request.path
            );
        }
        assert!(
            request.tests.contains("pm.test("),
            "{:?} asserts nothing",
            request.name
        );
    }
}

#[test]
fn path_normalisation_and_matching() {
    assert_eq!(normalise("/auth/sessions/{id}"), "/auth/sessions/{}");
    assert_eq!(normalise("/auth/sessions/:id"), "/auth/sessions/{}");
    assert_eq!(
        normalise("/auth/sessions/{{SESSION_ID}}"),
        "/auth/sessions/{}"
    );
    assert_eq!(normalise("/auth/admin/users?email=a"), "/auth/admin/users");
    assert_eq!(normalise("/docs/"), "/docs/");
    assert_eq!(normalise("/docs/{*rest}"), "/docs/{*}");
    assert!(route_matches("/auth/sessions/{}", "/auth/sessions/{}"));
    assert!(!route_matches("/auth/sessions/{}", "/auth/sessions"));
    assert!(route_matches("/docs/{*}", "/docs/swagger-ui.css"));
    assert!(!route_matches("/docs/{*}", "/docs/"));
    assert!(!route_matches("/docs/", "/docs"));
}

// --- Dockerfile ---------------------------------------------------------------------------

/// Dockerfile instructions (continuation lines joined, comments dropped).
fn dockerfile() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, arguments) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((
            instruction.to_ascii_uppercase(),
            arguments.trim().to_owned(),
        ));
        current.clear();
    }
    instructions
}

fn exec_form(arguments: &str) -> Vec<String> {
    serde_json::from_str(arguments)
        .unwrap_or_else(|e| panic!("not an exec-form JSON array ({e}): {arguments}"))
}

/// The last `instruction` of the final stage (the runtime image).
fn final_stage(instruction: &str) -> Vec<String> {
    let all = dockerfile();
    let last_from = all.iter().rposition(|(i, _)| i == "FROM").expect("FROM");
    all[last_from..]
        .iter()
        .filter(|(i, _)| i == instruction)
        .map(|(_, a)| a.clone())
        .collect()
}

/// The HEALTHCHECK's command (exec form, after the options).
fn healthcheck_command() -> Vec<String> {
    let healthcheck = final_stage("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1, "one HEALTHCHECK in the runtime image");
    let (_, command) = healthcheck[0]
        .split_once("CMD ")
        .expect("HEALTHCHECK … CMD [..]");
    exec_form(command.trim())
}

#[test]
fn dockerfile_runs_logicredit_auth_serve_and_checks_healthz() {
    let entrypoint = final_stage("ENTRYPOINT");
    let cmd = final_stage("CMD");
    assert_eq!(entrypoint.len(), 1);
    assert_eq!(cmd.len(), 1);
    assert_eq!(exec_form(&entrypoint[0]), ["logicredit-auth"]);
    assert_eq!(exec_form(&cmd[0]), ["serve"]);
    assert!(
        final_stage("COPY")
            .iter()
            .any(|c| c.ends_with("/usr/local/bin/logicredit-auth")),
        "the binary is installed as /usr/local/bin/logicredit-auth"
    );
    assert!(
        final_stage("USER")
            .iter()
            .all(|u| !u.starts_with("root") && !u.starts_with('0'))
    );
    assert!(
        !final_stage("USER").is_empty(),
        "the runtime image runs as a non-root user"
    );
    assert_eq!(final_stage("EXPOSE"), ["8000"]);
    let command = healthcheck_command().join(" ");
    assert!(
        command.contains("/healthz"),
        "HEALTHCHECK must GET /healthz: {command}"
    );
    let build = dockerfile()
        .into_iter()
        .filter(|(i, _)| i == "RUN")
        .any(|(_, a)| a.contains("cargo build --release --locked"));
    assert!(build, "the builder runs cargo build --release --locked");

    // Every variable the image sets is a documented one.
    let documented = documented_variables();
    let env: Vec<String> = final_stage("ENV")
        .iter()
        .flat_map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|pair| pair.split_once('=').map(|(n, _)| n.to_owned()))
        .collect();
    assert!(env.contains(&"BIND_ADDR".to_owned()) && env.contains(&"APP_ENV".to_owned()));
    for name in env {
        assert!(
            documented.contains(&name),
            "ENV {name} is not in .env.example"
        );
    }
}

// --- The binary, started as the image starts it -------------------------------------------

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "logicredit-packaging-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the server if the test ends early.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.1 GET; the status code, or None when nothing answers.
fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

fn wait_for_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs the Dockerfile's HEALTHCHECK command with the container's BIND_ADDR.
fn run_healthcheck(bind_addr: &str) -> bool {
    let command = healthcheck_command();
    Command::new(&command[0])
        .args(&command[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BIND_ADDR", bind_addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `logicredit-auth <CMD>` as the image's ENTRYPOINT + CMD would, on a free port,
/// and waits for GET /healthz to answer. Retries with another port if the chosen one was
/// taken in the meantime (another test process may grab it between probe and bind).
fn start_like_the_image(scratch: &Scratch) -> (Server, u16, PathBuf) {
    let mut argv = exec_form(&final_stage("ENTRYPOINT")[0]);
    argv.extend(exec_form(&final_stage("CMD")[0]));
    assert_eq!(argv[0], "logicredit-auth");
    for attempt in 0..3 {
        let port = free_port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = scratch.0.join(format!("server-{attempt}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_logicredit-auth"))
            .args(&argv[1..])
            .current_dir(&scratch.0)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_ENV", "development")
            .env("BIND_ADDR", address.to_string())
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/data/auth.db", scratch.0.display()),
            )
            .env("DATA_DIR", scratch.0.join("data"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start logicredit-auth serve");
        let mut server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.0.try_wait() {
                exited = true;
                break;
            }
            match http_status(address, "/healthz") {
                Some(200) => return (server, port, log),
                Some(other) => panic!("GET /healthz answered {other}:\n{}", log_of(&log)),
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let output = log_of(&log);
        if exited && output.contains("in use") {
            continue;
        }
        panic!("GET /healthz did not answer 200 within 20 s (exited: {exited}):\n{output}");
    }
    panic!("three free ports in a row were taken");
}

#[test]
fn the_binary_started_like_the_image_serves_healthz_and_stops_cleanly_on_sigterm() {
    let scratch = Scratch::new();
    let (mut server, port, log) = start_like_the_image(&scratch);

    // Every GET route the library lists is served by the binary: the route table the
    // Postman checks rely on names no route the router lacks.
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    for route in router_routes()
        .iter()
        .filter(|r| r.method == "GET" && r.kind != RouteKind::Metrics)
    {
        let path = route
            .path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{*rest}", "index.html");
        let status = http_status(address, &path);
        assert!(
            status.is_some_and(|s| s != 404 && s != 405),
            "GET {path} ({:?}) answered {status:?}:\n{}",
            route.kind,
            log_of(&log)
        );
    }

    // The image's HEALTHCHECK works against it (the container binds 0.0.0.0:<port>).
    assert!(
        run_healthcheck(&format!("0.0.0.0:{port}")),
        "the Dockerfile HEALTHCHECK failed against a healthy service"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let exit = wait_for_exit(&mut server.0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no exit within 15 s of SIGTERM:\n{}", log_of(&log)));
    assert!(
        exit.success(),
        "exit after SIGTERM: {exit}\n{}",
        log_of(&log)
    );

    // And it reports failure once nothing listens.
    assert!(
        !run_healthcheck(&format!("0.0.0.0:{port}")),
        "the HEALTHCHECK passed with the service stopped"
    );
}
