//! `redis-tasks`: the admin command line, usable without any task code.
//!
//! It offers the same subcommands as a user's own binary built with
//! `redis_tasks::App`, except `worker` (which needs task functions).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use redis_tasks::cli::{
    AdminCommand, CompletionsArgs, GlobalArgs, one_line, print_error, print_stderr, run_admin,
    write_completions,
};

/// Manage redis-tasks queues, tasks and workers.
#[derive(Debug, Parser)]
#[command(name = "redis-tasks", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a shell completion script for this program.
    Completions(CompletionsArgs),
    #[command(flatten)]
    Admin(AdminCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Usage errors: clap's message without the usage block, as one
            // line ("error: ...").
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .split("\nUsage:")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with("For more information"))
                .collect();
            print_stderr(&one_line(&message.join("\n")));
            return ExitCode::from(2);
        }
    };
    redis_tasks::init_logging(cli.global.log_format);
    let command = match cli.command {
        Command::Completions(args) => {
            let argv0 = std::env::args_os().next();
            write_completions(
                Cli::command(),
                argv0.as_deref(),
                args.shell,
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Admin(command) => command,
    };
    match run_admin(&cli.global, command, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}
