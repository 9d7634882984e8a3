//! The system under test: the database (a fresh SQLite file or a fresh PostgreSQL schema)
//! and paysteps processes started from the binary next to this one, each on a free
//! loopback port, with what they cost read from /proc.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;

/// The dashboard credential the servers run with.
pub const DASHBOARD_TOKEN: &str = "bench-dashboard-token-0123456789abcdef";

/// Where the servers keep their data; created fresh for each bench and dropped after.
pub enum Database {
    Sqlite { path: PathBuf },
    Postgres { server: String, schema: String },
}

impl Database {
    pub fn sqlite(dir: &Path) -> Database {
        Database::Sqlite {
            path: dir.join("paysteps.db"),
        }
    }

    /// Creates the schema `bench_<tag>` on the server at `server`.
    pub async fn postgres(server: &str, tag: &str) -> anyhow::Result<Database> {
        let schema = format!("bench_{}", tag.to_ascii_lowercase());
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .context("connecting to the PostgreSQL server given by --database-url")?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating schema {schema}"))?;
        conn.close().await.ok();
        Ok(Database::Postgres {
            server: server.to_owned(),
            schema,
        })
    }

    /// The `DATABASE_URL` the servers (and the bench's own reads) use.
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite { path } => path.display().to_string(),
            Database::Postgres { server, schema } => {
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}options[search_path]={schema}")
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres { .. })
    }

    /// Drops the PostgreSQL schema; the SQLite file goes with the bench's directory.
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        if let Database::Postgres { server, schema } = self {
            let mut conn = sqlx::PgConnection::connect(server).await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut conn)
                .await
                .with_context(|| format!("dropping schema {schema}"))?;
            conn.close().await.ok();
        }
        Ok(())
    }
}

/// How to start each server process.
pub struct Launch<'a> {
    pub bin: &'a Path,
    pub database: &'a Database,
    pub secret: &'a str,
    pub workers: Option<usize>,
    /// Working directory and home of the logs.
    pub dir: &'a Path,
}

struct Server {
    url: String,
    child: Child,
    log: PathBuf,
}

/// The running paysteps processes; killed on drop if [`Cluster::stop`] was not reached.
pub struct Cluster {
    servers: Vec<Server>,
}

impl Cluster {
    pub async fn start(launch: &Launch<'_>, processes: usize) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster {
            servers: Vec::new(),
        };
        for index in 0..processes {
            cluster.servers.push(spawn(launch, index)?);
        }
        let client = reqwest::Client::new();
        for server in &mut cluster.servers {
            wait_healthy(&client, server).await?;
        }
        Ok(cluster)
    }

    /// Base URLs, `http://127.0.0.1:<port>`, one per process.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().map(|s| s.child.id()).collect()
    }

    /// Asks every process to shut down gracefully (SIGTERM), killing any that has not
    /// exited 30 s later. Returns the processes that did not exit cleanly.
    pub fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for server in &self.servers {
            let pid = server.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
        }
        for server in &mut self.servers {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match server.child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        problems.push(format!("{} exited with {status}", server.url));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = server.child.kill();
                        let _ = server.child.wait();
                        problems.push(format!("{} did not stop within 30 s; killed", server.url));
                        break;
                    }
                }
            }
        }
        problems
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Ok(None) = server.child.try_wait() {
                let _ = server.child.kill();
                let _ = server.child.wait();
            }
        }
    }
}

fn spawn(launch: &Launch<'_>, index: usize) -> anyhow::Result<Server> {
    let port = free_port()?;
    let log = launch.dir.join(format!("server-{index}.log"));
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let subcommand = if launch.database.is_postgres() {
        "serve"
    } else {
        "dev"
    };
    let mut command = Command::new(launch.bin);
    command
        .arg(subcommand)
        .current_dir(launch.dir)
        .env("DATABASE_URL", launch.database.url())
        .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
        .env("STRIPE_WEBHOOK_SECRET", launch.secret)
        .env("PAYSTEPS_DASHBOARD_TOKEN", DASHBOARD_TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    if let Some(workers) = launch.workers {
        command.env("PAYSTEPS_WORKERS", workers.to_string());
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", launch.bin.display()))?;
    Ok(Server {
        url: format!("http://127.0.0.1:{port}"),
        child,
        log,
    })
}

/// A loopback port nobody listens on now; the server binds it a moment later.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_healthy(client: &reqwest::Client, server: &mut Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = format!("{}/health", server.url);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "paysteps at {} exited with {status} before answering /health:\n{}",
                server.url,
                log_tail(&server.log)
            );
        }
        if let Ok(response) = client.get(&health).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "paysteps at {} did not answer /health with 200 within 60 s:\n{}",
                server.url,
                log_tail(&server.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// CPU time and disk writes of one process, cumulative since it started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// `write_bytes` of `/proc/<pid>/io`: bytes this process caused to be written to storage.
    pub write_bytes: u64,
}

/// Clock ticks per second; `getconf CLK_TCK` is 100 on Linux everywhere we run, and
/// reading it without libc is not worth it.
pub const TICKS_PER_SEC: f64 = 100.0;

impl Usage {
    pub fn cpu_secs(self) -> f64 {
        self.cpu_ticks as f64 / TICKS_PER_SEC
    }

    pub fn since(self, before: Usage) -> Usage {
        Usage {
            cpu_ticks: self.cpu_ticks.saturating_sub(before.cpu_ticks),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
        }
    }

    pub fn add(self, other: Usage) -> Usage {
        Usage {
            cpu_ticks: self.cpu_ticks + other.cpu_ticks,
            write_bytes: self.write_bytes + other.write_bytes,
        }
    }
}

/// `pid` is a number, or `self`.
pub fn usage(pid: &str) -> anyhow::Result<Usage> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is the first, utime the 12th and stime the 13th.
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (tick(11), tick(12)) else {
        bail!("unexpected /proc/{pid}/stat: {stat}");
    };
    let io = fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("reading /proc/{pid}/io"))?;
    Ok(Usage {
        cpu_ticks: utime + stime,
        write_bytes: field(&io, "write_bytes:").unwrap_or(0),
    })
}

/// Peak resident set size (`VmHWM`) in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    field(&status, "VmHWM:").context("no VmHWM in /proc/<pid>/status")
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Usage of every local PostgreSQL server process (backends, WAL writer, checkpointer…),
/// by pid; processes we may not read are skipped.
pub fn postgres_usage() -> HashMap<u32, Usage> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| Some((pid, usage(&pid.to_string()).ok()?)))
        .collect()
}

/// Bytes of WAL the PostgreSQL server has generated so far; `None` on SQLite.
pub async fn wal_bytes(store: &paysteps::testing::store::Store) -> Option<u64> {
    if store.dialect() != paysteps::testing::store::Dialect::Postgres {
        return None;
    }
    let row: (i64,) = store
        .fetch_one("SELECT wal_bytes::bigint FROM pg_stat_wal", vec![])
        .await
        .ok()?;
    u64::try_from(row.0).ok()
}

/// What PostgreSQL processes used between two snapshots; a process started in between
/// counts from zero, one that exited in between is lost (pooled connections stay open).
pub fn postgres_delta(before: &HashMap<u32, Usage>, after: &HashMap<u32, Usage>) -> Usage {
    after.iter().fold(Usage::default(), |sum, (pid, now)| {
        sum.add(now.since(before.get(pid).copied().unwrap_or_default()))
    })
}

/// Database commits and the transactions they carried, summed over the servers'
/// `db_commit_batch_size` histograms on `/metrics`; `None` where none is exposed.
pub async fn commit_batches(urls: &[String]) -> Option<Batches> {
    let client = reqwest::Client::new();
    let mut total = Batches::default();
    let mut found = false;
    for url in urls {
        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.split_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if name.ends_with("db_commit_batch_size_count") {
                total.commits += value;
                found = true;
            } else if name.ends_with("db_commit_batch_size_sum") {
                total.transactions += value;
            }
        }
    }
    found.then_some(total)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Batches {
    pub commits: f64,
    pub transactions: f64,
}

impl Batches {
    pub fn since(self, before: Batches) -> Batches {
        Batches {
            commits: self.commits - before.commits,
            transactions: self.transactions - before.transactions,
        }
    }
}
