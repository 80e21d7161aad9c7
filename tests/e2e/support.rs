//! Test harness: real upstream servers on `127.0.0.1:0` and the real `wasmgate` binary.
//!
//! ```ignore
//! let up = Upstream::echo().await;
//! let gw = Gateway::start(&format!(r#"... targets = ["{}"] ..."#, up.addr)).await;
//! let resp = client().get(gw.url("/api")).send().await?;
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// Directory holding the plugins built from `plugins/`.
pub const PLUGIN_DIR: &str = env!("WASMGATE_PLUGIN_DIR");

/// Path of a built plugin, e.g. `plugin("fault")`.
pub fn plugin(name: &str) -> String {
    format!("{PLUGIN_DIR}/{name}.wasm")
}

/// Directory holding the Python, JavaScript and C plugins built by
/// `scripts/build-examples.sh`.
pub const EXAMPLES_DIR: &str = env!("WASMGATE_EXAMPLES_DIR");

/// Path of a plugin built by `scripts/build-examples.sh`, e.g. `example("ab-router")`.
pub fn example(name: &str) -> String {
    let path = format!("{EXAMPLES_DIR}/{name}.wasm");
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} is missing: build the Python, JavaScript and C plugins with `bash scripts/build-examples.sh` (scripts/test.sh does it)"
    );
    path
}

/// What a test upstream does with each request.
#[derive(Clone)]
pub enum Behaviour {
    /// Answer 200 with a JSON description of the request.
    Echo,
    /// Never answer.
    Hang,
    /// Answer like `Echo` after a delay.
    Slow(Duration),
    /// Answer like `Echo` after a delay (in milliseconds) the test can change at any time.
    Variable(Arc<std::sync::atomic::AtomicU64>),
}

/// What a test server does with one request.
type Handler = Arc<
    dyn Fn(
            Request<Incoming>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<Response<Full<Bytes>>, hyper::Error>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// An HTTP/1.1 server on a loopback port.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn echo() -> Self {
        Self::start(Behaviour::Echo).await
    }

    pub async fn start(behaviour: Behaviour) -> Self {
        Self::serve(move |addr| {
            Arc::new(move |req| Box::pin(respond(behaviour.clone(), addr, req)))
        })
        .await
    }

    /// A server answering with `handler(request head, body) -> (status, JSON body)`.
    pub async fn custom<F>(handler: F) -> Self
    where
        F: Fn(&http::request::Parts, &[u8]) -> (u16, String) + Send + Sync + 'static,
    {
        Self::raw(move |parts, body| {
            let (status, text) = handler(parts, body);
            let mut resp = Response::new(Bytes::from(text));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        })
        .await
    }

    /// An upstream whose handler builds the whole response from the request.
    pub async fn raw<F>(handler: F) -> Self
    where
        F: Fn(&http::request::Parts, &[u8]) -> Response<Bytes> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        Self::serve(move |_| {
            Arc::new(move |req: Request<Incoming>| {
                let handler = handler.clone();
                Box::pin(async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    Ok(handler(&parts, &body).map(Full::new))
                })
            })
        })
        .await
    }

    /// Binds a loopback port and answers every request with the handler made for it,
    /// counting requests.
    async fn serve(make_handler: impl FnOnce(SocketAddr) -> Handler) -> Self {
        Self::serve_on("127.0.0.1:0".parse().unwrap(), make_handler).await
    }

    /// An echo server on `addr`: a target coming back where it was.
    pub async fn echo_on(addr: SocketAddr) -> Self {
        Self::serve_on(addr, move |addr| {
            Arc::new(move |req| Box::pin(respond(Behaviour::Echo, addr, req)))
        })
        .await
    }

    /// Like `serve`, on a given address. Connections live in the accept task, so stopping
    /// it (drop, [`Upstream::kill`]) closes them too.
    async fn serve_on(addr: SocketAddr, make_handler: impl FnOnce(SocketAddr) -> Handler) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = make_handler(addr);
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let (counter, handler) = (counter.clone(), handler.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        handler(req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    /// Stops the server at once: the port refuses connections and open ones are closed.
    pub async fn kill(&self) {
        self.task.abort();
        // Let the abort land before the caller relies on it.
        while !self.task.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    behaviour: Behaviour,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    match behaviour {
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::Variable(delay) => {
            tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst))).await;
        }
        Behaviour::Echo => {}
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value.to_str().unwrap_or("<binary>").to_owned());
    }
    let description = json!({
        "upstream": addr.to_string(),
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body[..body.len().min(64 << 10)]),
        "body_sha256": hex(&Sha256::digest(&body)),
    });
    let mut resp = Response::new(Full::new(Bytes::from(description.to_string())));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut()
        .insert("x-upstream-header", "kept".parse().unwrap());
    resp.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(resp)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running `wasmgate run` process.
pub struct Gateway {
    child: Child,
    addrs: BTreeMap<String, SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Standard output: the access log.
    access: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// The config's first listener is named `main` unless the test names its own.
pub const MAIN_LISTENER: &str = "[listeners.main]\naddr = \"127.0.0.1:0\"\n";

/// A config with one route, named `all`, proxying everything to `upstream`.
pub fn proxy_config(upstream: SocketAddr) -> String {
    format!(
        "{MAIN_LISTENER}[upstreams.up]\ntargets = [\"{upstream}\"]\n[[routes]]\nname = \"all\"\nupstream = \"up\"\n"
    )
}

impl Gateway {
    /// Starts the binary on `config` and waits until every listener is bound.
    pub async fn start(config: &str) -> Self {
        Self::try_start(config)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the binary on a config it must refuse; returns what it said.
    pub async fn refused(config: &str) -> String {
        match Self::try_start(config).await {
            Ok(_) => panic!("the gateway accepted a config it should refuse:\n{config}"),
            Err(e) => e,
        }
    }

    pub async fn try_start(config: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let listeners = config.matches("[listeners.").count() + config.matches("[admin]").count();
        let config_path = path.clone();
        tokio::task::spawn_blocking(move || Self::spawn(config_path, listeners, dir))
            .await
            .unwrap()
    }

    fn spawn(path: PathBuf, listeners: usize, dir: tempfile::TempDir) -> Result<Self, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["--log-format", "json", "run"])
            .arg(&path)
            .env("WASMGATE_CACHE_DIR", cache_dir())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let access = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let access_sink = access.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                access_sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let mut addrs = BTreeMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while addrs.len() < listeners {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let logs = logs.lock().unwrap().join("\n");
                    return Err(format!("gateway did not start:\n{logs}"));
                }
            };
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "listening"
            {
                let name = event["listener"].as_str().unwrap().to_owned();
                let addr = event["addr"].as_str().unwrap().parse().unwrap();
                addrs.insert(name, addr);
            }
        }
        Ok(Self {
            child,
            addrs,
            logs,
            access,
            _dir: dir,
        })
    }

    /// Access-log lines written so far, waiting up to 5 s for at least `count`.
    pub fn access_lines(&self, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.access.lock().unwrap().clone();
            if lines.len() >= count || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Address of the listener `name`.
    pub fn addr_of(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// `http://<admin listener><path>` (the config needs an `[admin]` table).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr_of("admin"))
    }

    /// The body of `GET <path>` on the admin listener, e.g. the `/metrics` text.
    pub async fn admin_text(&self, path: &str) -> String {
        let resp = client().get(self.admin_url(path)).send().await.unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.text().await.unwrap()
    }

    /// The config file the gateway runs on (rewrite it to trigger a reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("gateway.toml")
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends `signal` (e.g. `HUP`) to the gateway.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// Address of the `main` listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr_of("main")
    }

    /// `http://<main listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Log lines so far, parsed.
    pub fn logs(&self) -> Vec<Value> {
        let lines = self.logs.lock().unwrap().clone();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first log line that satisfies `pred`, waiting up to 5 s for it to be written
    /// (the log is read from the gateway's stderr in the background).
    pub fn find_log(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit (after `terminate`).
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the gateway said: the cause of a 500 is in its log.
        if std::thread::panicking()
            && let Ok(lines) = self.logs.lock()
        {
            let start = lines.len().saturating_sub(40);
            eprintln!(
                "--- the gateway's last {} log lines ---",
                lines.len() - start
            );
            for line in &lines[start..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Compiled plugins are cached across the test run, like a real deployment's cache.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasmgate-cache")
}

/// An HTTP client that never reuses connections across tests and has no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The JSON body of a response.
/// Sends `request` as written on a new connection and reads until the server closes it (at
/// most 10 s): the status (0 if none) and the whole response.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub async fn json(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The first value the echo upstream saw for a request header.
pub fn seen_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

/// Runs `wasmgate` with `args`, returning (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .current_dir(cwd)
        .env("WASMGATE_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `redis-server` of the test's own on a loopback port, without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for these tests (apt-get install redis-server)",
            );
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
