//! The `tokengate` binary as a process: started with an environment (and optionally a config
//! file), its log lines collected as they come, its addresses read off its "listening" line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::WAIT;

pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

pub struct GatewayProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    count: watch::Receiver<usize>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub decision_addr: Option<SocketAddr>,
    config: Option<PathBuf>,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.config {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl GatewayProcess {
    /// Start the gateway with `env` (nothing inherited but `PATH`) and, when given, `config` as
    /// its YAML file; JSON logs unless `env` says otherwise. Returns once it logs that it listens.
    pub async fn start(env: &[(&str, &str)], config: Option<&str>) -> GatewayProcess {
        let config = config.map(|yaml| {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("tokengate-proc-{}-{n}.yaml", std::process::id()));
            std::fs::write(&path, yaml).unwrap();
            path
        });
        let mut process = GatewayProcess::start_with(env, config.as_deref()).await;
        process.config = config;
        process
    }

    /// `start` with `--config path`, a file the caller owns (and may change while it runs).
    pub async fn start_with(env: &[(&str, &str)], path: Option<&Path>) -> GatewayProcess {
        let mut command = Command::new(BIN);
        command.env_clear().env("RUST_LOG", "info").env("TOKENGATE_LOG_FORMAT", "json");
        command.envs(env.iter().copied());
        if let Some(path) = path {
            command.arg("--config").arg(path);
        }
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0);
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push(line);
                let _ = tx.send(all.len());
            }
        });
        let mut process = GatewayProcess {
            child,
            lines,
            count,
            addr: "0.0.0.0:0".parse().unwrap(),
            admin_addr: "0.0.0.0:0".parse().unwrap(),
            decision_addr: None,
            config: None,
        };
        let listening = process.wait_for(|l| l.contains("tokengate listening")).await;
        let field = |key: &str| -> Option<SocketAddr> {
            let json = serde_json::from_str::<Value>(&listening).ok();
            let value = match &json {
                Some(v) => v.get(key).and_then(Value::as_str).map(str::to_owned),
                // logfmt
                None => logfmt(&listening).get(key).and_then(Value::as_str).map(str::to_owned),
            };
            value.map(|v| v.parse().unwrap())
        };
        process.addr = field("addr").expect("the listening line names addr");
        process.admin_addr = field("admin_addr").expect("the listening line names admin_addr");
        process.decision_addr = field("decision_addr");
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many lines logged so far satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| pred(l)).count()
    }

    /// The `n`th line (counting from 1, from the start) that satisfies `pred`, waiting for it
    /// (bounded by WAIT).
    pub async fn wait_for_nth(&mut self, n: usize, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().filter(|l| pred(l)).nth(n - 1) {
                return line.clone();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("tokengate exited ({status}): {}", self.lines().join("\n"));
            }
            let changed = tokio::time::timeout_at(deadline, self.count.changed()).await;
            assert!(matches!(changed, Ok(Ok(()))), "no such log line in time:\n{}", self.lines().join("\n"));
        }
    }

    /// The first line (from the start) that satisfies `pred`, waiting for it (bounded by WAIT).
    pub async fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_nth(1, pred).await
    }

    /// The access-log line (JSON) whose `request_id` is `id`.
    pub async fn access_line(&mut self, id: &str) -> Map<String, Value> {
        let line = self.wait_for(|l| l.contains("\"target\":\"access\"") && l.contains(id)).await;
        let Value::Object(map) = serde_json::from_str(&line).unwrap() else { panic!("not an object: {line}") };
        map
    }

    /// Send `signal` (a `kill` name such as `TERM`).
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    }

    /// Wait for the process to exit; its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let status = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || child.wait()))
            .await
            .expect("tokengate exits in time")
            .unwrap()
            .unwrap();
        status.code()
    }
}

/// A logfmt line as a map of strings (a bare empty value is null).
pub fn logfmt(line: &str) -> Map<String, Value> {
    let mut map = Map::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').unwrap_or_else(|| panic!("not logfmt: {line}"));
        let key = rest[..eq].to_owned();
        rest = &rest[eq + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            // A JSON string: find its closing quote.
            let mut end = 0;
            let bytes = quoted.as_bytes();
            while bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            let value: String = serde_json::from_str(&rest[..end + 2]).unwrap();
            rest = &quoted[end + 1..];
            Value::String(value)
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            let value = &rest[..end];
            rest = &rest[end..];
            if value.is_empty() {
                Value::Null
            } else {
                Value::String(value.to_owned())
            }
        };
        map.insert(key, value);
        rest = rest.trim_start();
    }
    map
}
