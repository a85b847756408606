//! `zerotrace admin`: companies and tokens, directly on the store of the data dir (whoever can
//! read the data dir is the operator already).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use zt_store::model::Role;
use zt_store::sqlite::backup::BackupSummary;
use zt_store::Storage;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Companies (tenants).
    #[command(subcommand)]
    Company(CompanyCommand),
    /// User tokens of a company.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Enrolled agents (hosts) of a company.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Citus mode (PostgreSQL with the citus extension): where each table goes, and the
    /// conversion of an existing deployment.
    #[command(subcommand)]
    Citus(CitusCommand),
    /// Copies the embedded database to PATH while servers keep running (one consistent
    /// snapshot, checked). PostgreSQL: use pg_dump (README.md, "Deploy" > "Backups").
    Backup {
        /// The new backup file (must not exist yet).
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Makes the backup at PATH the data directory's database (servers on it stopped).
    Restore {
        /// A file made by `zerotrace admin backup`.
        path: PathBuf,
        /// Replace a database already in the data directory (it is kept beside it).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum CitusCommand {
    /// Prints where each table goes (distributed by company_id, reference table, or on the
    /// coordinator) and where it is now; changes nothing.
    Plan {
        #[arg(long)]
        json: bool,
    },
    /// Distributes an existing deployment's tables over the Citus worker nodes: prints the
    /// plan, then carries it out table by table (writes to a table wait while its rows are
    /// copied; reads go on). Restart the servers afterwards.
    Distribute {
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum CompanyCommand {
    /// Creates a company; prints its id and enroll secret (shown once).
    Create {
        name: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Lists the companies.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deletes a company with all its data (agents, findings, tokens, sessions, events).
    Delete {
        id: zt_store::model::CompanyId,
        /// The company's id or exact name again, to confirm.
        #[arg(long)]
        confirm: String,
        #[arg(long)]
        json: bool,
    },
    /// Replaces a company's enroll secret; prints the new one (shown once). The old one
    /// stops enrolling at once.
    RotateEnrollSecret {
        id: zt_store::model::CompanyId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Gives an agent a new token (printed once) and revokes its old one.
    RotateToken {
        #[arg(long)]
        company: zt_store::model::CompanyId,
        agent: zt_store::model::AgentId,
        #[arg(long)]
        json: bool,
    },
    /// Revokes an agent's token: it can no longer report.
    RevokeToken {
        #[arg(long)]
        company: zt_store::model::CompanyId,
        agent: zt_store::model::AgentId,
    },
    /// Decommissions an agent: token revoked, open findings resolved as `decommissioned`,
    /// apps removed from the counts.
    Decommission {
        #[arg(long)]
        company: zt_store::model::CompanyId,
        agent: zt_store::model::AgentId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Viewer,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Creates a user token of a company; prints it (shown once).
    Create {
        #[arg(long)]
        company: zt_store::model::CompanyId,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// What the token is for (shown in the list).
        #[arg(long)]
        name: Option<String>,
        /// The token stops working this many days from now (1 to 3650; default never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Lists a company's user tokens (never their secrets).
    List {
        #[arg(long)]
        company: zt_store::model::CompanyId,
        #[arg(long)]
        json: bool,
    },
    /// Revokes a user token at once (running servers drop it within a second).
    Revoke {
        #[arg(long)]
        company: zt_store::model::CompanyId,
        token_id: uuid::Uuid,
    },
}

pub fn run(c: Command, global: &crate::GlobalArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match c {
            Command::Backup { path, json } => backup(global, &path, json).await,
            Command::Restore { path, force, json } => restore(global, &path, force, json).await,
            Command::Citus(c) => citus(global, c).await,
            c => {
                let (store, _) = super::open_store(global, 2).await?;
                dispatch(c, &*store.storage()).await
            }
        }
    })
}

/// On PostgreSQL the database server's own tools do backups.
fn refuse_postgres(global: &crate::GlobalArgs, verb: &str) -> anyhow::Result<()> {
    if global.database_url.is_some() {
        anyhow::bail!(
            "`zerotrace admin {verb}` copies the embedded SQLite database; on PostgreSQL use \
             pg_dump --format=custom and pg_restore (README.md, \"Deploy\" > \"Backups\")"
        );
    }
    Ok(())
}

fn print_summary(s: &BackupSummary, json: bool, extra: Option<(&str, String)>) {
    if json {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let (Some((k, val)), Some(map)) = (extra.clone(), v.as_object_mut()) {
            map.insert(k.to_string(), serde_json::Value::String(val));
        }
        println!("{v}");
    } else {
        println!("file: {}", s.path.display());
        println!("bytes: {}", s.bytes);
        println!("schema_version: {}", s.schema_version);
        println!("companies: {}", s.companies);
        println!("agents: {}", s.agents);
        println!("reports: {}", s.reports);
        println!("integrity_check: {}", s.integrity);
        if let Some((k, val)) = extra {
            println!("{k}: {val}");
        }
    }
}

async fn backup(global: &crate::GlobalArgs, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    refuse_postgres(global, "backup")?;
    let db = super::data_dir(global)?.join(super::SQLITE_FILE_NAME);
    let summary = zt_store::sqlite::backup::backup(&db, path).await?;
    print_summary(&summary, json, None);
    Ok(ExitCode::SUCCESS)
}

async fn restore(
    global: &crate::GlobalArgs,
    path: &Path,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    refuse_postgres(global, "restore")?;
    let db = super::sqlite_path(global)?;
    let (summary, kept) = zt_store::sqlite::backup::restore(path, &db, force).await?;
    // Opening the store brings an older backup's schema up to date.
    zt_store::AnyStore::open_sqlite(&db)
        .await
        .with_context(|| format!("the restored database {} does not open", db.display()))?;
    let extra = Some(("restored_to", db.display().to_string()));
    print_summary(&summary, json, extra);
    if let Some(kept) = kept {
        eprintln!("(the database it replaced is kept as {})", kept.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn citus(global: &crate::GlobalArgs, c: CitusCommand) -> anyhow::Result<ExitCode> {
    if global.database_url.is_none() {
        anyhow::bail!(
            "`zerotrace admin citus` works on PostgreSQL with the citus extension: pass \
             --database-url postgres://… (the coordinator)"
        );
    }
    let (store, shown) = super::open_store(global, 2).await?;
    let zt_store::AnyStore::Postgres(pg) = store else {
        anyhow::bail!("`zerotrace admin citus` needs a PostgreSQL --database-url");
    };
    let plan = pg
        .citus_plan()
        .await
        .with_context(|| format!("cannot plan the distribution of {shown}"))?;
    let (dry_run, json) = match c {
        CitusCommand::Plan { json } => (true, json),
        CitusCommand::Distribute { dry_run, json } => (dry_run, json),
    };
    let pending = plan.iter().filter(|t| t.pending()).count();
    if json {
        if dry_run {
            println!("{}", serde_json::json!({ "plan": plan }));
            return Ok(ExitCode::SUCCESS);
        }
    } else {
        println!("Citus placement of {shown} ({pending} table(s) to move):");
        print!("{}", zt_store::postgres::citus::describe(&plan));
        if dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        if pending == 0 {
            println!("nothing to do: every table is where the plan puts it");
        }
    }
    let moved = pg
        .citus_distribute(&plan)
        .await
        .context("distributing the tables failed (run the command again to resume)")?;
    if json {
        println!("{}", serde_json::json!({ "plan": plan, "moved": moved }));
    } else {
        for m in &moved {
            println!(
                "moved {}: {} ({} rows, {} after)",
                m.table,
                m.placement.as_str(),
                m.rows_before,
                m.rows_after
            );
        }
        println!(
            "done: {} table(s) moved. Restart the servers so that their connections carry \
             each transaction's company to the workers.",
            moved.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(c: Command, store: &dyn Storage) -> anyhow::Result<ExitCode> {
    match c {
        Command::Company(CompanyCommand::Create { name, json }) => {
            let name = name.trim();
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                anyhow::bail!("a company name is 1 to 200 printable characters");
            }
            let (company, secret) = zt_server::accounts::create_company(store, name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": company.id, "name": company.name, "enroll_secret": secret})
                );
            } else {
                println!("id: {}", company.id);
                println!("name: {}", company.name);
                println!("enroll_secret: {secret}");
                eprintln!("(the enroll secret is shown once; agents enroll with it)");
            }
        }
        Command::Company(CompanyCommand::List { json }) => {
            let companies = store.list_companies().await?;
            if json {
                println!("{}", serde_json::json!({ "items": companies }));
            } else {
                let mut table = comfy_table::Table::new();
                table.load_style(comfy_table::presets::NOTHING);
                table.set_header(["ID", "NAME", "CREATED"]);
                for c in &companies {
                    table.add_row([c.id.to_string(), c.name.clone(), c.created_at.to_rfc3339()]);
                }
                println!("{table}");
            }
        }
        Command::Backup { .. } | Command::Restore { .. } | Command::Citus(_) => {
            unreachable!("run() handles them without opening the store")
        }
        Command::Token(TokenCommand::Create {
            company,
            role,
            name,
            expires_in_days,
            json,
        }) => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Viewer => Role::Viewer,
            };
            let name = name.map(|n| n.trim().to_string());
            if let Some(n) = &name {
                if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
                    anyhow::bail!("--name: a token name is 1 to 100 printable characters");
                }
            }
            let Some((token, info)) = zt_server::accounts::create_named_token(
                store,
                company,
                role,
                name,
                expires_in_days,
            )
            .await?
            else {
                anyhow::bail!("no company {company}");
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"token": token, "token_id": info.token_id,
                        "company_id": company, "role": role, "name": info.name,
                        "expires_at": info.expires_at})
                );
            } else {
                println!("{token}");
                eprintln!("(the token is shown once; its id is {})", info.token_id);
            }
        }
        Command::Token(TokenCommand::List { company, json }) => {
            if store.get_company(company).await?.is_none() {
                anyhow::bail!("no company {company}");
            }
            let tokens = store.list_tokens(company).await?;
            if json {
                println!("{}", serde_json::json!({ "items": tokens }));
            } else {
                let mut table = comfy_table::Table::new();
                table.load_style(comfy_table::presets::NOTHING);
                table.set_header([
                    "TOKEN ID",
                    "ROLE",
                    "NAME",
                    "CREATED",
                    "LAST USED",
                    "EXPIRES",
                    "REVOKED",
                ]);
                let t = |d: Option<chrono::DateTime<chrono::Utc>>| {
                    d.map(|d| d.to_rfc3339()).unwrap_or_else(|| "-".into())
                };
                for k in &tokens {
                    table.add_row([
                        k.token_id.to_string(),
                        k.role.as_str().to_string(),
                        k.name.clone().unwrap_or_default(),
                        k.created_at.to_rfc3339(),
                        t(k.last_used_at),
                        t(k.expires_at),
                        t(k.revoked_at),
                    ]);
                }
                println!("{table}");
            }
        }
        Command::Token(TokenCommand::Revoke { company, token_id }) => {
            if store
                .revoke_token(company, token_id, chrono::Utc::now())
                .await?
                .is_none()
            {
                anyhow::bail!("company {company} has no token {token_id}");
            }
            eprintln!("token {token_id} revoked");
        }
        Command::Company(CompanyCommand::Delete { id, confirm, json }) => {
            let Some(company) = store.get_company(id).await? else {
                anyhow::bail!("no company {id}");
            };
            let confirm = confirm.trim();
            if confirm != company.name && confirm.parse().ok() != Some(id) {
                anyhow::bail!(
                    "--confirm: {confirm:?} is neither the id nor the exact name of company {id} ({:?})",
                    company.name
                );
            }
            let Some(purged) = store.delete_company(id).await? else {
                anyhow::bail!("no company {id}");
            };
            if json {
                let deleted: std::collections::BTreeMap<_, _> = purged.tables.into_iter().collect();
                println!(
                    "{}",
                    serde_json::json!({"company_id": id, "deleted": deleted})
                );
            } else {
                for (table, n) in &purged.tables {
                    println!("{table}: {n}");
                }
                eprintln!("company {id} ({}) deleted with all its data", company.name);
            }
        }
        Command::Company(CompanyCommand::RotateEnrollSecret { id, json }) => {
            let Some((secret, _)) = zt_server::accounts::rotate_enroll_secret(store, id).await?
            else {
                anyhow::bail!("no company {id}");
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"company_id": id, "enroll_secret": secret})
                );
            } else {
                println!("{secret}");
                eprintln!("(the enroll secret is shown once; the old one no longer enrolls)");
            }
        }
        Command::Agent(AgentCommand::RotateToken {
            company,
            agent,
            json,
        }) => {
            let Some((token, _)) =
                zt_server::accounts::rotate_agent_token(store, company, agent).await?
            else {
                anyhow::bail!("company {company} has no live agent {agent}");
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"agent_id": agent, "agent_token": token})
                );
            } else {
                println!("{token}");
                eprintln!("(the agent token is shown once; the old one no longer works)");
            }
        }
        Command::Agent(AgentCommand::RevokeToken { company, agent }) => {
            if store
                .replace_agent_token(company, agent, None, chrono::Utc::now())
                .await?
                .is_none()
            {
                anyhow::bail!("company {company} has no live agent {agent}");
            }
            eprintln!("the token of agent {agent} is revoked");
        }
        Command::Agent(AgentCommand::Decommission {
            company,
            agent,
            json,
        }) => {
            let Some(done) = store
                .decommission_agent(company, agent, chrono::Utc::now())
                .await?
            else {
                anyhow::bail!("company {company} has no live agent {agent}");
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"agent_id": agent, "resolved_findings": done.resolved_findings,
                        "removed_apps": done.removed_apps})
                );
            } else {
                println!("resolved_findings: {}", done.resolved_findings);
                println!("removed_apps: {}", done.removed_apps);
                eprintln!("agent {agent} decommissioned");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
