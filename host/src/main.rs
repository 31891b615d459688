use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = scriptbox::cli::Cli::parse();
    // RUST_LOG decides; without it the service says what it is doing (start,
    // configuration, failed runs, stop) and one-shot commands only warn.
    let default = match args.command {
        scriptbox::cli::Command::Serve { .. } => "scriptbox=info,warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(scriptbox::cli::execute(args))
}
