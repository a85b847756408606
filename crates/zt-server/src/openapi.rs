//! The OpenAPI 3.1 document, generated from the code: every API handler carries a
//! `#[utoipa::path]` attribute and is registered with `utoipa_axum::routes!`, so the router
//! and the document come from the same registrations (`routes::router`); request and
//! response schemas are derived from the types the handlers parse and serialize.
//!
//! Who may call an operation is said by its `security` requirements, one scheme per kind of
//! credential (bearer tokens, the names saying whose: [`OPERATOR`], [`COMPANY_ADMIN`],
//! [`COMPANY_VIEWER`], [`AGENT`]; and the dashboard's session cookie, [`SESSION`], which every
//! operation open to operator or user tokens admits: see [`admit_sessions`]). An operation
//! without requirements is public (or, like enrollment and sign-in, authenticated by its body:
//! `x-zerotrace-body-credential` names the field, `x-zerotrace-body-credential-schemes` the
//! kinds of token it takes when not an enroll secret). The cross-tenant matrix test
//! (`crates/zerotrace/tests/tenant_matrix.rs`) derives the expected status of every route
//! for every kind of credential from these requirements.
//!
//! Error answers are listed per status with the `E…` types below (each one status, the
//! shared `Error` schema, `Retry-After` where the server sends it).

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

/// The operator token (`zto_…`): every company.
pub const OPERATOR: &str = "operator";
/// A user token (`ztu_…`) of role admin, of the company in the path.
pub const COMPANY_ADMIN: &str = "company_admin";
/// A user token (`ztu_…`) of role viewer (or admin), of the company in the path.
pub const COMPANY_VIEWER: &str = "company_viewer";
/// An agent token (`zta_…`): the agent's own reports.
pub const AGENT: &str = "agent";
/// A dashboard session (cookie `zt_session`): what the token it was opened with may do.
pub const SESSION: &str = "session";

/// A control-character-free text, as every text field of a request must be (see
/// `zt_inventory::text_problem`).
pub const NO_CONTROL_CHARS: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ZeroTrace API",
        version = "1",
        description = "Agents report inventories; the server matches them against vulnerability \
knowledge and keeps each company's findings apart. Every error is \
{\"error\":{\"code\",\"message\",\"field\"?}}. A company id (or any id) that is not the caller's \
answers 404 exactly like a missing one. Bearer tokens: zto_ operator, ztu_ user (role admin or \
viewer), zta_ agent; the security requirements of each operation say which may call it. The \
dashboard signs in with a token (POST /api/v1/session) and then uses an HttpOnly session cookie \
plus the X-ZeroTrace-CSRF header on writes."
    ),
    // The enumerations query parameters name (`value_type`): a parameter's schema is a
    // reference, so the schema it names must be here.
    components(schemas(
        ErrorBody,
        crate::routes::reads::ExportFormat,
        zt_store::model::FindingStatus,
        zt_store::model::FindingSort,
        zt_store::model::SortOrder,
        zt_store::model::AgentSort,
        zt_store::model::SoftwareSort,
        zt_store::model::VulnSort,
        zt_store::analysis::SuppressedFilter,
        zt_store::analysis::AnalysisStatus,
    )),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                OPERATOR,
                "The operator token (zto_…): sees and administers every company.",
            ),
            (
                COMPANY_ADMIN,
                "A user token (ztu_…) of role admin of the company named in the path.",
            ),
            (
                COMPANY_VIEWER,
                "A user token (ztu_…) of role viewer of the company named in the path.",
            ),
            (AGENT, "An agent token (zta_…), given at enrollment."),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "A dashboard session (POST /api/v1/session): it may do what the token it was \
                 opened with may do, and nothing once that token is revoked. A write sent with \
                 the cookie must carry the session's X-ZeroTrace-CSRF header (403 without).",
            ))),
        );
    }
}

/// The one error shape of the API.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // documents the shape `ApiError` writes
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Machine-readable: `invalid_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `rate_limited`, `queue_full`, `payload_too_large`, …
    code: String,
    message: String,
    /// The offending field of invalid input (`apps[3].version`, `limit`).
    #[schema(required = false)]
    field: String,
}

fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
    let mut builder = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build(),
    );
    if retry_after {
        builder = builder.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer)
                        .minimum(Some(1)),
                ))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    builder.build().into()
}

macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $description:literal, $retry:literal;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([($code.to_string(), error_response($description, $retry))])
                }
            }
        )*
    };
}

error_responses! {
    /// Invalid input; `field` names it.
    E400 = "400", "Invalid input: the error's field names the offending one", false;
    /// Missing, malformed, unknown, revoked or expired credential.
    E401 = "401", "Missing, malformed, unknown, revoked or expired token", false;
    /// A valid credential without the authority for this operation.
    E403 = "403", "The token may not do this", false;
    /// Missing, or another company's (exactly alike).
    E404 = "404", "No such resource (or not the caller's: exactly alike)", false;
    /// The report id belongs to another agent.
    E409 = "409", "Conflict with stored data", false;
    /// Over the body size limit.
    E413 = "413", "The request body is over the size limit", false;
    /// An unsupported Content-Encoding.
    E415 = "415", "Unsupported Content-Encoding (gzip or identity)", false;
    /// Over a rate limit.
    E429 = "429", "Over a rate limit", true;
    /// The queue is over its bound.
    E503 = "503", "The processing queue is full", true;
}

/// Adds the session cookie to the requirements of every operation an operator or user token
/// may call: a session authorizes what its token may (`auth::authenticate`), so these are
/// exactly the operations a signed-in browser may call.
pub fn admit_sessions(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let Some(security) = op.security.as_mut() else {
                continue;
            };
            let json = serde_json::to_value(&*security).unwrap_or_default();
            let names: Vec<String> = json
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().cloned())
                .collect();
            let for_people = names
                .iter()
                .any(|n| [OPERATOR, COMPANY_ADMIN, COMPANY_VIEWER].contains(&n.as_str()));
            if for_people && !names.iter().any(|n| n == SESSION) {
                security.push(SecurityRequirement::new::<_, _, &str>(SESSION, []));
            }
        }
    }
}

/// The `format` of every `cursor` parameter: an opaque value the server gave as a list's
/// `next_cursor` (its sort's values, encoded), or empty for the first page. Any other string is
/// refused with 400 naming `cursor`; no pattern can say which strings decode, so the format
/// names the rule (schema-based tools are taught it: `crates/zerotrace/tests/schemathesis/`).
pub const CURSOR_FORMAT: &str = "zt-cursor";

/// Marks every `cursor` query parameter with [`CURSOR_FORMAT`].
pub fn mark_cursors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{Schema, SchemaFormat};
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for p in op.parameters.iter_mut().flatten() {
                let RefOr::T(p) = p else { continue };
                if p.name != "cursor" {
                    continue;
                }
                if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
                    o.format = Some(SchemaFormat::Custom(CURSOR_FORMAT.into()));
                }
            }
        }
    }
}

/// The generated document (the router's registrations are its paths; see `routes::router`).
pub fn document() -> utoipa::openapi::OpenApi {
    crate::routes::api_router_parts(crate::config::ServerRole::All).1
}
