//! The `dlr-bench` binary: reads the command line, runs the suite, prints the table and
//! writes it to the results file.

use bench::options::{Options, USAGE};
use std::{process::ExitCode, time::Duration};

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(shared::DEFAULT_LOG_FILTER),
    )
    .init();

    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("{why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let machine = bench::describe_machine(&options);
    let outcome = runtime.block_on(async {
        tokio::select! {
            figures = bench::run(&options) => Some(figures),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));

    let figures = match outcome {
        Some(Ok(figures)) => figures,
        Some(Err(e)) => {
            log::error!("benchmark failed: {e}");
            return ExitCode::FAILURE;
        }
        None => {
            log::warn!("interrupted; the sandbox was removed");
            return ExitCode::from(130);
        }
    };

    let document = figures.markdown(&options, &machine);
    println!("{document}");
    if let Err(e) = std::fs::write(&options.out, &document) {
        log::error!("cannot write {}: {e}", options.out.display());
        return ExitCode::FAILURE;
    }
    log::info!("results written to {}", options.out.display());

    ExitCode::SUCCESS
}
