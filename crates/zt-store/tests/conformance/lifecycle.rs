//! The life of credentials, agents and companies (issue 17): tokens listed, expired and
//! revoked; agents rotated, revoked and decommissioned; enroll secrets replaced; companies
//! purged. Every change that takes authority away ends the tokens' sessions and moves the
//! credentials revision.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use zt_store::model::*;
use zt_store::Storage;

use super::{agent, claim, company, hash, incoming, lodash_matcher};
use crate::common::{npm as app, process};

fn user_token(
    company_id: CompanyId,
    n: u8,
    name: Option<&str>,
    expires_in: Option<i64>,
) -> NewUserToken {
    let now = Utc::now();
    NewUserToken {
        company_id,
        token_id: Uuid::now_v7(),
        role: Role::Viewer,
        name: name.map(str::to_string),
        hash: hash(n),
        created_at: now,
        expires_at: expires_in.map(|s| now + chrono::Duration::seconds(s)),
    }
}

fn session(n: u8, token: u8) -> NewSession {
    NewSession {
        session_hash: hash(n),
        token_hash: hash(token),
        created_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::hours(1),
    }
}

pub async fn user_tokens_are_listed_expire_and_revoke_with_their_sessions(store: &dyn Storage) {
    let acme = company(store, "Acme", 150).await;
    let beta = company(store, "Beta", 151).await;
    let named = user_token(acme, 152, Some("CI export"), None);
    let expired = user_token(acme, 153, None, Some(-5));
    let later = user_token(acme, 154, None, Some(3600));
    for t in [&named, &expired, &later] {
        assert!(store.create_token(t).await.unwrap());
    }
    assert!(!store
        .create_token(&user_token(CompanyId::new_v4(), 155, None, None))
        .await
        .unwrap());
    let viewer = Some(Principal::User {
        company_id: acme,
        role: Role::Viewer,
    });
    assert_eq!(store.resolve_token(hash(152)).await.unwrap(), viewer);
    assert_eq!(
        store.resolve_token(hash(153)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.resolve_token(hash(154)).await.unwrap(), viewer);

    let list = store.list_tokens(acme).await.unwrap();
    let ids: Vec<Uuid> = list.iter().map(|t| t.token_id).collect();
    assert_eq!(ids, [named.token_id, expired.token_id, later.token_id]);
    assert_eq!(list[0].name.as_deref(), Some("CI export"));
    assert_eq!(list[0].role, Role::Viewer);
    assert!(list
        .iter()
        .all(|t| t.revoked_at.is_none() && t.last_used_at.is_none()));
    assert!(list[1].expires_at.unwrap() < Utc::now());
    assert!(
        store.list_tokens(beta).await.unwrap().is_empty(),
        "Beta has none"
    );

    // last_used_at: batched, and an older time never overwrites a newer one.
    let used = Utc::now();
    store
        .touch_tokens(&[(hash(152), used), (hash(154), used)])
        .await
        .unwrap();
    store
        .touch_tokens(&[(hash(152), used - chrono::Duration::minutes(5))])
        .await
        .unwrap();
    let list = store.list_tokens(acme).await.unwrap();
    assert_eq!(
        list[0].last_used_at.map(|t| t.timestamp_millis()),
        Some(used.timestamp_millis())
    );

    // Revocation: by its company only, at once, ending the token's sessions.
    store.create_session(&session(160, 152)).await.unwrap();
    store.create_session(&session(161, 154)).await.unwrap();
    let before = store.credentials_revision().await.unwrap();
    assert_eq!(
        store
            .revoke_token(beta, named.token_id, Utc::now())
            .await
            .unwrap(),
        None,
        "another company's token is not found"
    );
    assert_eq!(
        store
            .revoke_token(acme, Uuid::now_v7(), Utc::now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.credentials_revision().await.unwrap(), before);
    let revoked = store
        .revoke_token(acme, named.token_id, Utc::now())
        .await
        .unwrap()
        .expect("found");
    assert_eq!(revoked.hashes, [hash(152)]);
    assert!(store.credentials_revision().await.unwrap() > before);
    assert_eq!(store.resolve_token(hash(152)).await.unwrap(), None);
    assert_eq!(
        store.resolve_session(hash(160), Utc::now()).await.unwrap(),
        None
    );
    assert_eq!(
        store.resolve_session(hash(161), Utc::now()).await.unwrap(),
        Some(hash(154)),
        "other tokens' sessions stay"
    );
    assert_eq!(store.resolve_token(hash(154)).await.unwrap(), viewer);
    // Again: nothing more to revoke.
    assert_eq!(
        store
            .revoke_token(acme, named.token_id, Utc::now())
            .await
            .unwrap(),
        Some(Revoked::default())
    );
    let list = store.list_tokens(acme).await.unwrap();
    assert!(list[0].revoked_at.is_some());
    assert!(list[2].revoked_at.is_none());
}

pub async fn agent_tokens_rotate_and_revoke_and_enroll_secrets_rotate(store: &dyn Storage) {
    let acme = company(store, "Acme", 170).await;
    let beta = company(store, "Beta", 171).await;
    let a = agent(store, acme, "web-1", 172).await;
    let principal = Some(Principal::Agent {
        company_id: acme,
        agent_id: a,
    });
    assert_eq!(
        store
            .replace_agent_token(beta, a, Some(hash(173)), Utc::now())
            .await
            .unwrap(),
        None,
        "not Beta's agent"
    );
    assert_eq!(store.resolve_token(hash(173)).await.unwrap(), None);
    let before = store.credentials_revision().await.unwrap();
    let rotated = store
        .replace_agent_token(acme, a, Some(hash(173)), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.hashes, [hash(172)]);
    assert!(store.credentials_revision().await.unwrap() > before);
    assert_eq!(store.resolve_token(hash(172)).await.unwrap(), None);
    assert_eq!(store.resolve_token(hash(173)).await.unwrap(), principal);
    let revoked = store
        .replace_agent_token(acme, a, None, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.hashes, [hash(173)]);
    assert_eq!(store.resolve_token(hash(173)).await.unwrap(), None);
    // The agent's data stays: it is still listed.
    assert_eq!(store.summary(acme).await.unwrap().agents, 1);

    assert_eq!(
        store
            .replace_enroll_secret(CompanyId::new_v4(), hash(175), Utc::now())
            .await
            .unwrap(),
        None
    );
    let replaced = store
        .replace_enroll_secret(acme, hash(175), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.hashes, [hash(170)]);
    assert_eq!(store.resolve_token(hash(170)).await.unwrap(), None);
    assert_eq!(
        store.resolve_token(hash(175)).await.unwrap(),
        Some(Principal::Enroll { company_id: acme })
    );
    assert_eq!(
        store.resolve_token(hash(171)).await.unwrap(),
        Some(Principal::Enroll { company_id: beta }),
        "Beta's secret stays"
    );
}

pub async fn decommissioned_agents_resolve_their_findings_and_leave_the_counts(
    store: &dyn Storage,
) {
    let acme = company(store, "Acme", 180).await;
    let a = agent(store, acme, "web-1", 181).await;
    let b = agent(store, acme, "web-2", 182).await;
    let t = Utc::now();
    let apps = vec![app("lodash", "4.17.15"), app("minimist", "0.0.8")];
    for ag in [a, b] {
        store
            .accept_reports(&[incoming(acme, ag, &apps, t)], 100)
            .await
            .unwrap();
        let got = store
            .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
            .await
            .unwrap();
        process(store, &got[0], "w", &apps, t, &lodash_matcher).await;
    }
    let s = store.summary(acme).await.unwrap();
    assert_eq!(
        (s.agents, s.apps, s.findings.high, s.findings.medium),
        (2, 4, 4, 2)
    );
    // A report of `a` still waiting when it is decommissioned is dropped.
    let late = incoming(acme, a, &[app("lodash", "4.17.19")], Utc::now());
    store.accept_reports(&[late], 100).await.unwrap();
    let head = store.event_log_bounds().await.unwrap().head;

    assert_eq!(
        store
            .decommission_agent(CompanyId::new_v4(), a, Utc::now())
            .await
            .unwrap(),
        None
    );
    let done = store
        .decommission_agent(acme, a, Utc::now())
        .await
        .unwrap()
        .expect("a live agent");
    assert_eq!(done.revoked.hashes, [hash(181)]);
    assert_eq!((done.resolved_findings, done.removed_apps), (3, 2));
    assert_eq!(store.resolve_token(hash(181)).await.unwrap(), None);
    assert_eq!(
        store.decommission_agent(acme, a, Utc::now()).await.unwrap(),
        None,
        "only once"
    );

    // Counts: the host and its findings are gone from the summary, hosts list and software.
    let s = store.summary(acme).await.unwrap();
    assert_eq!(
        (s.agents, s.apps, s.findings.high, s.findings.medium),
        (1, 2, 2, 1)
    );
    let hosts = store
        .list_agents(acme, &AgentFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        hosts.items.iter().map(|h| h.agent_id).collect::<Vec<_>>(),
        [b]
    );
    let software = store
        .list_software(acme, &SoftwareFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(software.items.len(), 2);
    assert!(software.items.iter().all(|s| s.hosts == 1), "{software:?}");
    // Its findings are resolved as decommissioned, not deleted.
    let resolved = store
        .list_findings(
            acme,
            &FindingFilter {
                status: FindingStatus::Resolved,
                agent_id: Some(a),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(resolved.items.len(), 3);
    assert!(resolved
        .items
        .iter()
        .all(|f| f.resolution.as_deref() == Some("decommissioned") && f.resolved_at.is_some()));
    let open = store
        .list_findings(acme, &FindingFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert!(open.items.iter().all(|f| f.agent_id == b));
    // One event tells live pages.
    let events = store.events_after(Some(acme), head, 100).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::FindingsChanged);
    let data: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(data["agent_id"], a.to_string());
    assert_eq!(data["resolved_total"], 3);
    assert_eq!(data["opened_total"], 0);
    assert_eq!(data["resolved"].as_array().unwrap().len(), 3);
    // Nothing is left to claim for it.
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert!(got.is_empty(), "{got:?}");
}

pub async fn deleting_a_company_purges_it_and_nothing_else(store: &dyn Storage) {
    let acme = company(store, "Acme", 190).await;
    let beta = company(store, "Beta", 191).await;
    let t = Utc::now();
    let apps = vec![app("lodash", "4.17.15")];
    let mut agents = Vec::new();
    for (c, n) in [(acme, 192), (beta, 193)] {
        let ag = agent(store, c, "web", n).await;
        store
            .accept_reports(&[incoming(c, ag, &apps, t)], 100)
            .await
            .unwrap();
        let got = store
            .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
            .await
            .unwrap();
        process(store, &got[0], "w", &apps, t, &lodash_matcher).await;
        agents.push(ag);
    }
    assert!(store
        .create_token(&user_token(acme, 194, None, None))
        .await
        .unwrap());
    store.create_session(&session(195, 194)).await.unwrap();
    store
        .record_trends(t, t.date_naive() - chrono::Duration::days(10))
        .await
        .unwrap();
    let beta_before = store.summary(beta).await.unwrap();

    assert_eq!(
        store.delete_company(CompanyId::new_v4()).await.unwrap(),
        None
    );
    let purged = store.delete_company(acme).await.unwrap().expect("exists");
    let mut revoked = purged.revoked.hashes.clone();
    revoked.sort_by_key(|h| h.0);
    assert_eq!(revoked, [hash(190), hash(192), hash(194)]);
    let deleted = |table: &str| {
        purged
            .tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("{table} not purged: {:?}", purged.tables))
    };
    assert_eq!(deleted("companies"), 1);
    assert_eq!(deleted("agents"), 1);
    assert_eq!(deleted("apps"), 1);
    assert_eq!(deleted("findings"), 2);
    assert_eq!(deleted("credentials"), 3);
    assert_eq!(deleted("company_daily"), 1);
    assert!(deleted("events") >= 2, "enrolled and processed events");
    // The company goes after every row that points at it; its audit trail, which refuses
    // deletes while the company exists, after the company.
    let names: Vec<&str> = purged.tables.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names[names.len() - 2..],
        ["companies", "audit"],
        "{names:?}"
    );

    assert_eq!(store.get_company(acme).await.unwrap(), None);
    for h in [190, 192, 194] {
        assert_eq!(store.resolve_token(hash(h)).await.unwrap(), None);
    }
    assert_eq!(
        store.resolve_session(hash(195), Utc::now()).await.unwrap(),
        None
    );
    assert!(store.list_tokens(acme).await.unwrap().is_empty());
    assert_eq!(store.summary(acme).await.unwrap().agents, 0);
    assert!(store
        .events_after(Some(acme), 0, 100)
        .await
        .unwrap()
        .iter()
        .all(|e| e.company_id != Some(acme)));
    // Beta is untouched.
    assert_eq!(store.summary(beta).await.unwrap(), beta_before);
    assert_eq!(
        store.resolve_token(hash(193)).await.unwrap(),
        Some(Principal::Agent {
            company_id: beta,
            agent_id: agents[1]
        })
    );
    let names: Vec<String> = store
        .list_companies()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Beta"]);
    // Deployment secrets: the first proposal stands.
    assert_eq!(store.deployment_secret("k", "one").await.unwrap(), "one");
    assert_eq!(store.deployment_secret("k", "two").await.unwrap(), "one");
}
