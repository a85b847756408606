//! Sign-in for people through an OpenID Connect provider (issue 17, item 5): the
//! authorization code flow with PKCE, the provider found through its discovery document, the
//! ID token checked here (signature against the provider's JWKS, `iss`, `aud`/`azp`, `exp`,
//! `nonce`), and an IdP group (or any claim holding names) mapped to a company and role.
//!
//! What the flow carries between the redirect to the provider and the callback (state, nonce,
//! PKCE verifier, where to go next) is kept in a short-lived HttpOnly cookie signed with a key
//! kept in the store (`deployment_secret`), not in memory: with several API replicas behind a
//! balancer the callback may reach another process than the one that started the flow.
//!
//! A signed-in person gets what a token sign-in gets: a user token of the mapped company and
//! role (named after the person, expiring with the session, listed and revocable like any
//! other) and the same `zt_session` cookie bound to it (`routes::session`). Authorization thus
//! stays in one place, the token; the handlers are in `dashboard::sso`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zt_store::model::{CompanyId, Role};

/// The cookie that carries a sign-in in progress from the redirect to the callback.
pub const FLOW_COOKIE: &str = "zt_oidc";
/// How long a person may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long the discovery document and the JWKS are trusted before they are read again (a
/// token signed with a key not in the cached set reads the set again at once).
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Signature algorithms an ID token may use: asymmetric ones only (never `none`, never an HMAC
/// keyed with the client secret, which a confused provider could be made to use).
const ALLOWED_ALGS: [jsonwebtoken::Algorithm; 9] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// An IdP group (a value of the groups claim) and what its members become here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMapping {
    pub group: String,
    pub company_id: CompanyId,
    pub role: Role,
}

impl GroupMapping {
    /// `GROUP=COMPANY_ID:ROLE` (the last `=` splits: LDAP-style group names contain `=`).
    pub fn parse(s: &str) -> Result<GroupMapping, String> {
        let (group, target) = s
            .trim()
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?}: expected GROUP=COMPANY_ID:ROLE"))?;
        let group = group.trim();
        if group.is_empty() {
            return Err(format!("{s:?}: the group is empty"));
        }
        let (company, role) = target
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected GROUP=COMPANY_ID:ROLE"))?;
        let company_id = company
            .trim()
            .parse::<CompanyId>()
            .map_err(|_| format!("{s:?}: {:?} is not a company id (a UUID)", company.trim()))?;
        let role = Role::parse(role.trim())
            .ok_or_else(|| format!("{s:?}: the role must be admin or viewer"))?;
        Ok(GroupMapping {
            group: group.to_string(),
            company_id,
            role,
        })
    }

    /// A file of mappings, one `GROUP=COMPANY_ID:ROLE` a line; blank lines and lines starting
    /// with `#` are skipped. Errors name the file and line.
    pub fn parse_file(path: &Path) -> Result<Vec<GroupMapping>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                GroupMapping::parse(line)
                    .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?,
            );
        }
        Ok(out)
    }
}

/// How this deployment signs people in through OIDC (`--oidc-*` options).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer identifier; its discovery document is
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// None: a public client (PKCE alone); else sent with HTTP Basic at the token endpoint.
    pub client_secret: Option<String>,
    /// The callback as the provider sends browsers to it: `<public URL>/signin/sso/callback`.
    pub redirect_url: String,
    /// Scopes asked for (`openid` is always among them).
    pub scopes: String,
    /// The ID token claim that names the person's groups (a list of strings, or one string).
    pub groups_claim: String,
    /// Checked in this order; the first group of the person's that is mapped wins.
    pub mappings: Vec<GroupMapping>,
}

impl OidcConfig {
    /// Which company and role the groups of a person map to (None: no group is mapped).
    pub fn map_groups(&self, groups: &[String]) -> Option<&GroupMapping> {
        self.mappings.iter().find(|m| groups.contains(&m.group))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered something unusable.
    #[error("identity provider: {0}")]
    Provider(String),
    /// What came back with the browser does not belong to a sign-in started in it (no or a
    /// bad flow cookie, another state): a bad request.
    #[error("{0}")]
    Invalid(String),
    /// The provider's answer does not authenticate anyone: the code refused, the ID token
    /// invalid (signature, issuer, audience, expiry, nonce).
    #[error("{0}")]
    Rejected(String),
}

/// The parts of the discovery document used here.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Metadata {
    discovery: Discovery,
    jwks: jsonwebtoken::jwk::JwkSet,
    read_at: Instant,
}

/// The OIDC client of one server process.
pub struct Oidc {
    pub config: OidcConfig,
    http: reqwest::Client,
    metadata: tokio::sync::Mutex<Option<Arc<Metadata>>>,
    key: tokio::sync::OnceCell<[u8; 32]>,
}

/// A sign-in in progress, as the flow cookie carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub next: String,
    /// Unix seconds after which the flow is void.
    pub exp: i64,
}

/// A person the provider vouched for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    /// `email`, else `preferred_username`, else `name` (for the token's name and the audit).
    pub label: Option<String>,
    pub groups: Vec<String>,
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Compares two strings in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Oidc, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            // The provider's endpoints come from its own discovery document: a redirect
            // elsewhere is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Provider(format!("HTTP client: {e}")))?;
        Ok(Oidc {
            config,
            http,
            metadata: tokio::sync::Mutex::new(None),
            key: tokio::sync::OnceCell::new(),
        })
    }

    /// The key signing flow cookies: the same on every process of the deployment.
    async fn key(&self, store: &dyn zt_store::Storage) -> Result<&[u8; 32], OidcError> {
        self.key
            .get_or_try_init(|| async {
                let stored = store
                    .deployment_secret("oidc-flow-key", &random_b64(32))
                    .await
                    .map_err(|e| OidcError::Provider(format!("the flow key: {e}")))?;
                URL_SAFE_NO_PAD
                    .decode(stored.trim())
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
                    .ok_or_else(|| OidcError::Provider("the stored flow key is malformed".into()))
            })
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(OidcError::Provider(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        resp.json()
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))
    }

    /// The provider's metadata and keys; read again when older than an hour or `refresh`.
    async fn metadata(&self, refresh: bool) -> Result<Arc<Metadata>, OidcError> {
        let mut slot = self.metadata.lock().await;
        if let Some(m) = slot.as_ref() {
            if !refresh && m.read_at.elapsed() < METADATA_TTL {
                return Ok(m.clone());
            }
        }
        let issuer = self.config.issuer.trim_end_matches('/');
        let discovery: Discovery = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        // OpenID Connect Discovery 1.0, 4.3: the document must name the issuer it was
        // fetched for, or its tokens could be another issuer's.
        if discovery.issuer.trim_end_matches('/') != issuer {
            return Err(OidcError::Provider(format!(
                "the discovery document names the issuer {:?}, not {issuer:?}",
                discovery.issuer
            )));
        }
        let jwks: jsonwebtoken::jwk::JwkSet = self.get_json(&discovery.jwks_uri).await?;
        let m = Arc::new(Metadata {
            discovery,
            jwks,
            read_at: Instant::now(),
        });
        *slot = Some(m.clone());
        Ok(m)
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and the
    /// flow cookie's value.
    pub async fn start(
        &self,
        store: &dyn zt_store::Storage,
        next: &str,
    ) -> Result<(String, String), OidcError> {
        let meta = self.metadata(false).await?;
        let flow = Flow {
            state: random_b64(32),
            nonce: random_b64(32),
            // RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~]; 32 random bytes make 43.
            verifier: random_b64(32),
            next: next.to_string(),
            exp: chrono::Utc::now().timestamp() + FLOW_TTL.as_secs() as i64,
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes()));
        let mut url = url::Url::parse(&meta.discovery.authorization_endpoint).map_err(|e| {
            OidcError::Provider(format!(
                "authorization_endpoint {:?}: {e}",
                meta.discovery.authorization_endpoint
            ))
        })?;
        let scopes = if self.config.scopes.split_whitespace().any(|s| s == "openid") {
            self.config.scopes.clone()
        } else {
            format!("openid {}", self.config.scopes)
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", scopes.trim())
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let cookie = self.seal(store, &flow).await?;
        Ok((url.into(), cookie))
    }

    async fn seal(&self, store: &dyn zt_store::Storage, flow: &Flow) -> Result<String, OidcError> {
        let body = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(flow).map_err(|e| OidcError::Provider(e.to_string()))?);
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key(store).await?)
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        mac.update(body.as_bytes());
        Ok(format!(
            "{body}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        ))
    }

    /// The flow of a cookie this deployment signed and that has not expired.
    pub async fn open(
        &self,
        store: &dyn zt_store::Storage,
        cookie: &str,
    ) -> Result<Flow, OidcError> {
        let invalid = || OidcError::Invalid("the sign-in cookie is not valid: start again".into());
        let (body, sig) = cookie.split_once('.').ok_or_else(invalid)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key(store).await?)
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).map_err(|_| invalid())?;
        let flow: Flow = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(invalid)?;
        if flow.exp < chrono::Utc::now().timestamp() {
            return Err(OidcError::Invalid(
                "the sign-in took too long: start again".into(),
            ));
        }
        Ok(flow)
    }

    /// Finishes a sign-in: checks `state` against the flow, trades the code for tokens and
    /// checks the ID token. Returns who signed in.
    pub async fn finish(
        &self,
        flow: &Flow,
        code: &str,
        state: &str,
    ) -> Result<Identity, OidcError> {
        if !same(state, &flow.state) {
            return Err(OidcError::Invalid(
                "the state does not match the sign-in started in this browser".into(),
            ));
        }
        let meta = self.metadata(false).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_url.as_str()),
            ("code_verifier", flow.verifier.as_str()),
        ];
        let mut req = self
            .http
            .post(&meta.discovery.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json");
        match &self.config.client_secret {
            // RFC 6749 2.3.1: both form-urlencoded, then Basic.
            Some(secret) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&self.config.client_id), Some(enc(secret)));
            }
            None => form.push(("client_id", self.config.client_id.as_str())),
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let resp = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            // An unknown, used or expired code is the browser's problem, not the provider's.
            let error = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| status.to_string());
            return Err(OidcError::Rejected(format!(
                "the identity provider refused the code: {error}"
            )));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: String,
        }
        let tokens: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            OidcError::Provider(format!("token endpoint answer without an ID token: {e}"))
        })?;
        self.verify_id_token(&tokens.id_token, &flow.nonce).await
    }

    /// Checks an ID token (OpenID Connect Core 1.0, 3.1.3.7): signed by a key of the
    /// provider's JWKS with an allowed algorithm, issued by the configured issuer for this
    /// client, not expired, and carrying the nonce of this browser's sign-in.
    async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<Identity, OidcError> {
        let bad = |what: String| OidcError::Rejected(format!("the ID token is not valid: {what}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        if !ALLOWED_ALGS.contains(&header.alg) {
            return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let mut meta = self.metadata(false).await?;
        let find = |m: &Metadata| -> Option<jsonwebtoken::jwk::Jwk> {
            match &header.kid {
                Some(kid) => m.jwks.find(kid).cloned(),
                // Without a key id, only a set of one key is unambiguous.
                None if m.jwks.keys.len() == 1 => m.jwks.keys.first().cloned(),
                None => None,
            }
        };
        let jwk = match find(&meta) {
            Some(k) => k,
            None => {
                // The provider may have rotated its keys since they were read.
                meta = self.metadata(true).await?;
                find(&meta)
                    .ok_or_else(|| bad("signed with a key the provider does not list".into()))?
            }
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[meta.discovery.issuer.as_str()]);
        validation.set_audience(&[self.config.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| bad(e.to_string()))?;
        let claims = data.claims;
        // 3.1.3.7 (4, 5): several audiences need an azp, and it must be us.
        if let Some(serde_json::Value::Array(auds)) = claims.get("aud") {
            if auds.len() > 1
                && claims.get("azp").and_then(|v| v.as_str()) != Some(&self.config.client_id)
            {
                return Err(bad("several audiences and azp is not this client".into()));
            }
        }
        match claims.get("nonce").and_then(|v| v.as_str()) {
            Some(n) if same(n, nonce) => {}
            Some(_) => return Err(bad("its nonce is not this sign-in's".into())),
            None => return Err(bad("it carries no nonce".into())),
        }
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("no subject".into()))?
            .to_string();
        let label = ["email", "preferred_username", "name"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
            .map(str::to_string);
        let groups = match claims.get(&self.config.groups_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject,
            label,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_and_name_their_problem() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let m = GroupMapping::parse(&format!("cn=sec,ou=groups={id}:viewer")).unwrap();
        assert_eq!(m.group, "cn=sec,ou=groups");
        assert_eq!(m.company_id.to_string(), id);
        assert_eq!(m.role, Role::Viewer);
        assert!(GroupMapping::parse(&format!("ops={id}:owner"))
            .unwrap_err()
            .contains("admin or viewer"));
        assert!(GroupMapping::parse("ops=acme:admin")
            .unwrap_err()
            .contains("not a company id"));
        assert!(GroupMapping::parse(&format!("={id}:admin"))
            .unwrap_err()
            .contains("group is empty"));
        assert!(GroupMapping::parse("ops").is_err());
    }

    #[test]
    fn a_mapping_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        std::fs::write(&path, format!("# groups\n\nops={id}:admin\nbad line\n")).unwrap();
        let e = GroupMapping::parse_file(&path).unwrap_err();
        assert!(
            e.ends_with(&format!(
                "map:4: {:?}: expected GROUP=COMPANY_ID:ROLE",
                "bad line"
            )),
            "{e}"
        );
        std::fs::write(&path, format!("# groups\n\nops={id}:admin\n")).unwrap();
        assert_eq!(GroupMapping::parse_file(&path).unwrap().len(), 1);
    }

    #[test]
    fn the_first_mapped_group_in_configuration_order_wins() {
        let a: CompanyId = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".parse().unwrap();
        let config = OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            redirect_url: String::new(),
            scopes: String::new(),
            groups_claim: "groups".into(),
            mappings: vec![
                GroupMapping {
                    group: "admins".into(),
                    company_id: a,
                    role: Role::Admin,
                },
                GroupMapping {
                    group: "staff".into(),
                    company_id: a,
                    role: Role::Viewer,
                },
            ],
        };
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config.map_groups(&g(&["staff", "admins"])).unwrap().role,
            Role::Admin
        );
        assert_eq!(
            config.map_groups(&g(&["staff"])).unwrap().role,
            Role::Viewer
        );
        assert!(config.map_groups(&g(&["others"])).is_none());
        assert!(config.map_groups(&[]).is_none());
    }
}
