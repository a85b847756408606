//! Creating companies, user tokens and the operator token: shared by the API and the
//! `zerotrace admin` commands, which work on the store directly.

use chrono::Utc;
use zt_store::model::{Company, CompanyId, Role};
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
    let token = generate_token(TokenKind::User);
    let created = store
        .create_user_token(company_id, role, hash_token(&token), Utc::now())
        .await?;
    Ok(created.then_some(token))
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
