//! The `ingest` binary: reads settings, starts logging and serves until stopped.

use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(shared::DEFAULT_LOG_FILTER),
    )
    .init();

    let settings = match ingest::settings::Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match ingest::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("ingest stopped with an error: {e}");
            ExitCode::FAILURE
        }
    }
}
