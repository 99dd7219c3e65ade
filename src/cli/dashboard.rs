//! `dashboard`: serve the web dashboard (see docs/dashboard.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use redis_tasks_config::Settings;
use redis_tasks_dashboard::DashboardOptions;
use redis_tasks_store::Store;

/// Arguments of `dashboard`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Address to listen on. Any address but loopback needs a given token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9181")]
    pub bind: SocketAddr,
    /// File holding the token browsers must give (first line; at least 16
    /// characters). The token can also come from RT_DASHBOARD_TOKEN; never
    /// on the command line, which every user of the host can read. Without
    /// either, a token is made and a login URL printed on stderr.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// No token at all, on a loopback address only: every local user and
    /// process (tasks included) can then read task arguments and delete
    /// tasks. For a single-user machine; see docs/security.md.
    #[arg(long)]
    pub no_auth: bool,
    /// Show the pages only: no requeue, cancel or delete.
    #[arg(long)]
    pub read_only: bool,
    /// Seconds between reloads of the live pages (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub refresh: u32,
}

pub(super) fn run(store: Store, settings: Settings, args: &DashboardArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => {
            redis_tasks_store::check_secret_file(path, "--token-file");
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            let token = text.lines().next().unwrap_or_default().trim().to_owned();
            anyhow::ensure!(
                !token.is_empty(),
                "the token file {} is empty",
                path.display()
            );
            Some(token)
        }
        None => std::env::var("RT_DASHBOARD_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    };
    let options = DashboardOptions {
        bind: args.bind,
        token,
        no_auth: args.no_auth,
        read_only: args.read_only,
        refresh_secs: args.refresh,
    };
    redis_tasks_dashboard::serve(store, settings, options)?;
    Ok(())
}
