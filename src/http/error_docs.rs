//! The documented error responses, from one place (issue 12, item 1).
//!
//! Each guard (extractor) contributes the rows it can really produce; a route lists the
//! sets of its guards plus its own rows, and `error_responses!` merges them into one
//! response per status (OpenAPI allows one per status per operation), joining the
//! descriptions, so every `code` a route can answer appears in its document.

use std::collections::BTreeMap;

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// One documented error: the status and the `code`(s) it carries, in words.
pub type Row = (u16, &'static str);

/// Any guard or body failure that reaches a dependency.
pub const UNAVAILABLE: &[Row] = &[(503, "`service_unavailable`: a dependency is down")];

/// `PreAuthRateLimit`: the per-IP bucket of the pre-authentication routes.
pub const PRE_AUTH: &[Row] = &[
    (
        429,
        "`rate_limited` (with `retry_after` and a `Retry-After` header)",
    ),
    UNAVAILABLE[0],
];

/// `JsonBody`: the body is not JSON, or its fields are missing or invalid.
pub const BODY: &[Row] = &[
    (
        400,
        "`malformed_request`: not JSON or not sent as application/json",
    ),
    (422, "`validation_error` with `fields`"),
];

/// `AnySession`: a pending or active session.
pub const SESSION: &[Row] = &[
    (401, "`not_authenticated`: no valid session"),
    UNAVAILABLE[0],
];

/// `EnrollingSession`: as `SESSION`, and a pending one is refused.
pub const ENROLLING: &[Row] = &[
    (401, "`not_authenticated`: no valid session"),
    (401, "`mfa_required` for an mfa_pending session"),
    UNAVAILABLE[0],
];

/// `ActiveSession`: as `ENROLLING`, and a session whose user must first enroll a second
/// factor (docs/API.md §11) is refused.
pub const ACTIVE: &[Row] = &[
    (401, "`not_authenticated`: no valid session"),
    (401, "`mfa_required` for an mfa_pending session"),
    (
        403,
        "`mfa_enrollment_required`: `AUTH_POLICY=psd2` (every account) or `PRIVILEGED_POLICY=pci` (staff, admin) and no second factor yet — only `/auth/me` and the enrollment routes answer",
    ),
    UNAVAILABLE[0],
];

/// The CSRF check every session guard runs on POST/PUT/PATCH/DELETE.
pub const CSRF: &[Row] = &[(403, "`csrf_failed`: missing or wrong `X-CSRF-Token`")];

/// `Authorized<Staff>` / `Fresh<Staff>`: the role is too low.
pub const STAFF_ROLE: &[Row] = &[(403, "`forbidden`: not staff")];

/// `Authorized<Admin>` / `Fresh<Admin>`: the role is too low.
pub const ADMIN_ROLE: &[Row] = &[(403, "`forbidden`: not an admin")];

/// `Fresh` / `FreshIfEnrolled`: the second factor was not verified recently enough.
pub const STEP_UP: &[Row] = &[(
    401,
    "`mfa_step_up_required` (with `max_age`, `methods` and a `WWW-Authenticate` header)",
)];

/// `Fresh`: the user has no second factor to step up with.
pub const ENROLLMENT: &[Row] = &[(403, "`mfa_enrollment_required`: no second factor enrolled")];

/// `OptionalJsonBody<EnrollmentProof>` on the first enrollment: the password proof and the
/// per-session enrollment limit.
pub const ENROLLMENT_PROOF: &[Row] = &[
    (
        401,
        "`reauthentication_required` (with `max_age`) when the first factor needs `current_password`, or `invalid_credentials` when it is wrong",
    ),
    (
        429,
        "`account_locked` (wrong passwords), or `rate_limited`: too many enrollments started on this session",
    ),
];

/// The rows of `sets`, one response per status, descriptions joined in order.
pub fn merged(sets: &[&[Row]]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for &(status, description) in sets.iter().flat_map(|set| set.iter()) {
        let descriptions = by_status.entry(status).or_default();
        if !descriptions.contains(&description) {
            descriptions.push(description);
        }
    }
    by_status
        .into_iter()
        .map(|(status, descriptions)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(descriptions.join("; "))
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// `error_responses!(Name = SET, OTHER, &[(409, "`code`")]);` — a unit type whose
/// `IntoResponses` is the merge of the sets, for `#[utoipa::path(responses(Name, …))]`.
macro_rules! error_responses {
    ($(#[$meta:meta])* $vis:vis $name:ident = $($set:expr),+ $(,)?) => {
        $(#[$meta])*
        $vis struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::http::error_docs::merged(&[$($set),+])
            }
        }
    };
}
pub(crate) use error_responses;

error_responses!(
    /// A read on an active session (GET: no CSRF check).
    pub SessionReadErrors = ACTIVE
);
error_responses!(
    /// A read that stays open while a required second factor is outstanding.
    pub EnrollingReadErrors = ENROLLING
);
error_responses!(
    /// A write on an active session: session, then CSRF.
    pub SessionErrors = ACTIVE, CSRF
);
error_responses!(
    /// A pre-authentication route with a JSON body: rate limit, then body.
    pub PreAuthErrors = PRE_AUTH, BODY
);
error_responses!(
    /// A read on a pending or active session (GET: no CSRF check).
    pub AnySessionReadErrors = SESSION
);
error_responses!(
    /// A write on a pending or active session: session, then CSRF.
    pub AnySessionErrors = SESSION, CSRF
);
error_responses!(
    /// `Fresh` (user routes): session, CSRF, then a recent second factor.
    pub FreshErrors = ACTIVE, CSRF, STEP_UP, ENROLLMENT
);
error_responses!(
    /// `Authorized<Staff>` on a GET.
    pub StaffReadErrors = ACTIVE, STAFF_ROLE
);
error_responses!(
    /// `Authorized<Admin>` on a GET.
    pub AdminReadErrors = ACTIVE, ADMIN_ROLE
);
error_responses!(
    /// `Fresh<Staff>`: session, CSRF, role, then a second factor really used recently.
    pub StaffFreshErrors = ACTIVE, CSRF, STAFF_ROLE, STEP_UP, ENROLLMENT
);

#[cfg(test)]
mod tests {
    use utoipa::IntoResponses;
    use utoipa::openapi::RefOr;

    use super::*;

    fn descriptions<T: IntoResponses>() -> Vec<(String, String)> {
        T::responses()
            .into_iter()
            .map(|(status, response)| match response {
                RefOr::T(response) => (status, response.description),
                RefOr::Ref(_) => panic!("inline responses only"),
            })
            .collect()
    }

    #[test]
    fn rows_sharing_a_status_become_one_response_listing_every_code() {
        error_responses!(Both = ENROLLING, CSRF, FRESH_TEST, &[(409, "`x`")]);
        const FRESH_TEST: &[Row] = &[(401, "`mfa_step_up_required`"), (503, UNAVAILABLE[0].1)];
        assert_eq!(
            descriptions::<Both>(),
            vec![
                (
                    "401".to_owned(),
                    "`not_authenticated`: no valid session; `mfa_required` for an mfa_pending session; `mfa_step_up_required`".to_owned()
                ),
                (
                    "403".to_owned(),
                    "`csrf_failed`: missing or wrong `X-CSRF-Token`".to_owned()
                ),
                ("409".to_owned(), "`x`".to_owned()),
                (
                    "503".to_owned(),
                    "`service_unavailable`: a dependency is down".to_owned()
                ),
            ]
        );
    }
}
