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
        #[arg(long)]
        json: bool,
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
        Command::Backup { .. } | Command::Restore { .. } => {
            unreachable!("run() handles them without opening the store")
        }
        Command::Token(TokenCommand::Create {
            company,
            role,
            json,
        }) => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Viewer => Role::Viewer,
            };
            let Some(token) = zt_server::accounts::create_user_token(store, company, role).await?
            else {
                anyhow::bail!("no company {company}");
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"token": token, "company_id": company, "role": role})
                );
            } else {
                println!("{token}");
                eprintln!("(the token is shown once)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
