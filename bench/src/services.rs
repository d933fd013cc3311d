//! Running the release `ingest` and `processor` binaries as child processes, and reading
//! their memory from `/proc`.

use crate::{
    error::{BenchError, Result},
    http,
    sandbox::Sandbox,
};
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};
use tokio::time::Instant;

/// Which service binary to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `target/release/ingest`.
    Ingest,
    /// `target/release/processor`.
    Processor,
}

impl Kind {
    fn binary_name(self) -> &'static str {
        match self {
            Kind::Ingest => "ingest",
            Kind::Processor => "processor",
        }
    }

    fn listen_variable(self) -> &'static str {
        match self {
            Kind::Ingest => "INGEST_LISTEN",
            Kind::Processor => "PROCESSOR_LISTEN",
        }
    }
}

/// Where the service binaries are: beside this benchmark's own binary, which `cargo build
/// --release --bins` puts in `target/release` with them.
pub fn binary(kind: Kind) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|dir| dir.join(kind.binary_name()))
        .ok_or_else(|| BenchError::new("cannot tell where the benchmark binary is"))?;
    if !path.exists() {
        return Err(BenchError(format!(
            "{} is missing: build the services first with `cargo build --release --bins`",
            path.display()
        )));
    }
    Ok(path)
}

/// A free TCP port on the loopback interface.
fn free_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Services started so far; numbers their log files, so a later run does not overwrite
/// an earlier one's log.
static SPAWNED: AtomicU32 = AtomicU32::new(0);

/// A service running as a child process; killed when dropped.
pub struct Service {
    child: Option<Child>,
    kind: Kind,
    /// The address its HTTP server listens on.
    pub addr: SocketAddr,
    /// Where its log goes.
    pub log_path: PathBuf,
}

impl Service {
    /// Starts the service against the sandbox, with `extra` variables on top, and waits
    /// until its `/readyz` answers 200.
    pub async fn start(kind: Kind, sandbox: &Sandbox, extra: &[(&str, String)]) -> Result<Service> {
        let addr = free_addr()?;
        let log_dir = std::env::temp_dir().join("dlr-bench-logs");
        std::fs::create_dir_all(&log_dir)?;
        let spawned = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let log_path = log_dir.join(format!(
            "{}-{spawned:02}-{}.log",
            sandbox.name,
            kind.binary_name()
        ));
        let log = std::fs::File::create(&log_path)?;
        let log_filter = std::env::var("BENCH_SERVICE_LOG")
            .unwrap_or_else(|_| shared::DEFAULT_LOG_FILTER.to_owned());

        let child = Command::new(binary(kind)?)
            .envs(sandbox.service_env())
            .env(kind.listen_variable(), addr.to_string())
            .env("RUST_LOG", log_filter)
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut service = Service {
            child: Some(child),
            kind,
            addr,
            log_path,
        };
        service.wait_ready(Duration::from_secs(30)).await?;

        Ok(service)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(200) = http::get_once(self.addr, "/readyz").await {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(BenchError(format!(
                    "{} exited at start-up ({status}); see {}",
                    self.kind.binary_name(),
                    self.log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(BenchError(format!(
            "{} was not ready within {limit:?}; see {}",
            self.kind.binary_name(),
            self.log_path.display()
        )))
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Peak and current resident memory, from `/proc`.
    pub fn memory(&self) -> Result<Memory> {
        Memory::of(self.pid())
    }

    /// Asks the service to stop (SIGTERM), and kills it if it has not within 10 s.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process's resident memory, in MiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    /// The most it has held since it started (`VmHWM`).
    pub peak_mib: f64,
    /// What it holds now (`VmRSS`).
    pub current_mib: f64,
}

impl Memory {
    /// Reads `/proc/<pid>/status`.
    pub fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Memory::parse(&status)
            .ok_or_else(|| BenchError(format!("/proc/{pid}/status has no VmHWM or VmRSS")))
    }

    /// Reads `VmHWM` and `VmRSS` from the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> Option<Memory> {
        let kib = |key: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        Some(Memory {
            peak_mib: kib("VmHWM:")? / 1024.0,
            current_mib: kib("VmRSS:")? / 1024.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_proc_status_text() {
        let status = "Name:\tingest\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\n\
                      VmRSS:\t   10240 kB\nThreads:\t5\n";

        let memory = Memory::parse(status).unwrap();

        assert_eq!(memory.peak_mib, 20.0);
        assert_eq!(memory.current_mib, 10.0);
    }
}
