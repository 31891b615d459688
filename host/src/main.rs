use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = scriptbox::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(scriptbox::cli::execute(args))
}
