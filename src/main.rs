use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    logicredit_auth::install_crypto_provider();
    logicredit_auth::telemetry::init_logging();
    match logicredit_auth::cli::run(logicredit_auth::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
