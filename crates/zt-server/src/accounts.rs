//! Creating companies, user tokens and the operator token: shared by the API and the
//! `zerotrace admin` commands, which work on the store directly.

use chrono::Utc;
use zt_store::model::{AgentId, Company, CompanyId, NewUserToken, Revoked, Role, TokenInfo};
use zt_store::{Storage, StoreError};

use crate::auth::{generate_token, hash_token, TokenKind};

/// Creates a company; returns it with its enroll secret (shown this once, stored hashed).
pub async fn create_company(
    store: &dyn Storage,
    name: &str,
) -> Result<(Company, String), StoreError> {
    let company = Company {
        // Time-ordered like agent ids (see routes/agent.rs).
        id: CompanyId::now_v7(),
        name: name.to_string(),
        created_at: Utc::now(),
    };
    let secret = generate_token(TokenKind::Enroll);
    store.create_company(&company, hash_token(&secret)).await?;
    tracing::info!(company = %company.id, name = %company.name, "company created");
    Ok((company, secret))
}

/// Creates a user token of a company; None when the company does not exist.
pub async fn create_user_token(
    store: &dyn Storage,
    company_id: CompanyId,
    role: Role,
) -> Result<Option<String>, StoreError> {
    Ok(create_named_token(store, company_id, role, None, None)
        .await?
        .map(|(token, _)| token))
}

/// Days a user token may live at most when it expires at all (ten years).
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// Creates a user token with an optional name and lifetime in days; returns the token (shown
/// this once, stored hashed) and what listing it shows. None when the company does not exist.
pub async fn create_named_token(
    store: &dyn Storage,
    company_id: CompanyId,
    role: Role,
    name: Option<String>,
    expires_in_days: Option<u32>,
) -> Result<Option<(String, TokenInfo)>, StoreError> {
    let token = generate_token(TokenKind::User);
    let now = Utc::now();
    let info = TokenInfo {
        token_id: uuid::Uuid::now_v7(),
        role,
        name,
        created_at: now,
        last_used_at: None,
        expires_at: expires_in_days.map(|d| now + chrono::Duration::days(i64::from(d))),
        revoked_at: None,
    };
    let created = store
        .create_token(&NewUserToken {
            company_id,
            token_id: info.token_id,
            role,
            name: info.name.clone(),
            hash: hash_token(&token),
            created_at: now,
            expires_at: info.expires_at,
        })
        .await?;
    Ok(created.then_some((token, info)))
}

/// A new token for an agent, replacing (revoking) the ones it had; None when the company has
/// no such live agent.
pub async fn rotate_agent_token(
    store: &dyn Storage,
    company_id: CompanyId,
    agent_id: AgentId,
) -> Result<Option<(String, Revoked)>, StoreError> {
    let token = generate_token(TokenKind::Agent);
    let revoked = store
        .replace_agent_token(company_id, agent_id, Some(hash_token(&token)), Utc::now())
        .await?;
    Ok(revoked.map(|r| (token, r)))
}

/// A new enroll secret for a company, replacing the old one; None when there is no such
/// company.
pub async fn rotate_enroll_secret(
    store: &dyn Storage,
    company_id: CompanyId,
) -> Result<Option<(String, Revoked)>, StoreError> {
    let secret = generate_token(TokenKind::Enroll);
    let revoked = store
        .replace_enroll_secret(company_id, hash_token(&secret), Utc::now())
        .await?;
    Ok(revoked.map(|r| (secret, r)))
}

/// Generates the operator token on first start. Returns it when this call created it (to be
/// shown once); None when one exists already.
pub async fn init_operator_token(store: &dyn Storage) -> Result<Option<String>, StoreError> {
    if store.operator_token_hash().await?.is_some() {
        return Ok(None);
    }
    let token = generate_token(TokenKind::Operator);
    Ok(store
        .init_operator_token(hash_token(&token))
        .await?
        .then_some(token))
}
