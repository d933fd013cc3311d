//! The `processor` binary: reads settings, starts logging and consumes until stopped.
//!
//! `processor` consumes; `processor replay` revalidates quarantined and dead-lettered
//! messages once, prints what moved as JSON and exits.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(shared::DEFAULT_LOG_FILTER),
    )
    .init();

    let settings = match processor::settings::Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::from(2);
        }
    };

    let command = std::env::args().nth(1);
    match command.as_deref() {
        None => match processor::run(settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("processor stopped with an error: {e}");
                ExitCode::FAILURE
            }
        },
        Some("replay") => match processor::replay::replay(&settings).await {
            Ok(summary) => {
                println!("{}", serde_json::json!(summary));
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::error!("replay failed: {e}");
                ExitCode::FAILURE
            }
        },
        Some(other) => {
            eprintln!("unknown command `{other}`; usage: processor [replay]");
            ExitCode::from(2)
        }
    }
}
