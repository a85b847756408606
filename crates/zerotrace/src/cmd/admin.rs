//! `zerotrace admin`: companies and tokens, directly on the store of the data dir (whoever can
//! read the data dir is the operator already).

use std::process::ExitCode;

use anyhow::Context;
use zt_store::model::Role;
use zt_store::Storage;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Companies (tenants).
    #[command(subcommand)]
    Company(CompanyCommand),
    /// User tokens of a company.
    #[command(subcommand)]
    Token(TokenCommand),
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
        let (store, _) = super::open_store(global, 2).await?;
        dispatch(c, &*store.storage()).await
    })
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
