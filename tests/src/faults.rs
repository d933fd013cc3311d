//! Private servers and a cuttable TCP proxy for the fault tests.
//!
//! The machine-wide PostgreSQL and RabbitMQ are never stopped by a test. A test that needs
//! a broker or a database to fail starts its own: a RabbitMQ node with its own name, ports
//! and data directory, or a PostgreSQL cluster made with `initdb` on its own port; or it
//! puts a [`TcpProxy`] of its own between a service and a server and cuts the connections.

use crate::free_addr;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chown(dir: &Path, user: &str) {
    let status = Command::new("chown")
        .args(["-R", user, &dir.display().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "chown {user} {}", dir.display());
}

fn wait_for_port(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A RabbitMQ node of the test's own, beside the machine-wide one.
pub struct PrivateRabbit {
    dir: PathBuf,
    node: String,
    /// Its AMQP address.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
}

impl PrivateRabbit {
    /// Starts a node and waits until it accepts AMQP connections.
    pub fn start(name: &str) -> PrivateRabbit {
        let dir = scratch_dir(name);
        let addr = free_addr();
        let dist = free_addr();
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = {addr}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
        chown(&dir, "rabbitmq");

        let node = format!("{name}@localhost");
        let path = |p: &str| dir.join(p).display().to_string();
        let env = vec![
            ("HOME".into(), "/var/lib/rabbitmq".into()),
            ("RABBITMQ_NODENAME".into(), node.clone()),
            ("RABBITMQ_NODE_PORT".into(), addr.port().to_string()),
            ("RABBITMQ_DIST_PORT".into(), dist.port().to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
                path("enabled_plugins"),
            ),
            ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq.conf")),
            ("RABBITMQ_CONF_ENV_FILE".into(), path("rabbitmq-env.conf")),
            ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
        ];
        let rabbit = PrivateRabbit {
            dir,
            node,
            addr,
            env,
        };
        rabbit.start_again();
        rabbit
    }

    fn as_rabbitmq(&self, tool: &str, args: &[&str]) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "rabbitmq", "--", "env"])
            .args(self.env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(format!("/usr/lib/rabbitmq/bin/{tool}"))
            .args(args)
            .current_dir("/var/lib/rabbitmq")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// The AMQP URL of the node.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Starts the node (again) on its data and waits until it accepts connections.
    pub fn start_again(&self) {
        let status = self
            .as_rabbitmq("rabbitmq-server", &["-detached"])
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmq-server -detached failed");
        assert!(
            wait_for_port(self.addr, Duration::from_secs(90)),
            "private RabbitMQ {} did not open {}",
            self.node,
            self.addr
        );
    }

    /// Stops the node; queues and messages stay on disk for [`PrivateRabbit::start_again`].
    pub fn stop(&self) {
        let _ = self
            .as_rabbitmq("rabbitmqctl", &["-n", &self.node, "stop"])
            .status();
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of the test's own, made with `initdb` on its own port.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// Its address.
    pub addr: SocketAddr,
}

impl PrivatePostgres {
    /// Creates and starts a cluster with trust authentication.
    pub fn start(name: &str) -> PrivatePostgres {
        let dir = scratch_dir(name);
        chown(&dir, "postgres");
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let postgres = PrivatePostgres {
            addr: free_addr(),
            dir,
            bin,
        };

        let data = postgres.dir.join("data").display().to_string();
        let status = postgres
            .as_postgres(
                "initdb",
                &["-D", &data, "-U", "postgres", "--auth=trust", "-N"],
            )
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        postgres.start_again();
        postgres
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// `postgres://postgres@addr` without a database name.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@{}", self.addr)
    }

    /// Starts the cluster (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.addr.port(),
            self.dir.display()
        );
        let status = self
            .as_postgres(
                "pg_ctl",
                &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
            )
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl start failed");
    }

    /// Stops the cluster in immediate mode, as a crash would.
    pub fn stop_immediately(&self) {
        let data = self.dir.join("data").display().to_string();
        let _ = self
            .as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .status();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy whose connections can be cut at once, as a network fault would.
pub struct TcpProxy {
    /// The address clients connect to.
    pub addr: SocketAddr,
    cuts: watch::Sender<u64>,
}

impl TcpProxy {
    /// Starts forwarding connections made to a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cuts, _) = watch::channel(0u64);
        let watcher = cuts.clone();

        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = watcher.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpProxy { addr, cuts }
    }

    /// Drops every open connection; new connections are forwarded again at once.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// A private nginx balancing between ingest replicas with the deployment's own
/// configuration (`deploy/nginx.local.conf.template`).
pub struct Nginx {
    dir: PathBuf,
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx in front of the two replicas and waits until it listens.
    pub fn start(name: &str, replicas: [SocketAddr; 2]) -> Nginx {
        let dir = scratch_dir(name);
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let template_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.local.conf.template");
        let template = std::fs::read_to_string(template_path).unwrap();
        let addr = free_addr();
        let config = template
            .replace("@LISTEN@", &addr.to_string())
            .replace("@INGEST1@", &replicas[0].to_string())
            .replace("@INGEST2@", &replicas[1].to_string());
        std::fs::write(dir.join("nginx.conf"), config).unwrap();

        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for_port(addr, Duration::from_secs(10)),
            "nginx did not listen"
        );
        Nginx { dir, child, addr }
    }

    /// Its access log, which names the upstreams each request went to.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default()
    }
}

fn nginx_binary() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/nginx");
    assert!(
        path.exists(),
        "nginx is missing: install it with `apt-get install nginx` (scripts/test.sh does)"
    );
    path
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
