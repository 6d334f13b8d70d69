//! A fake artifact mirror on 127.0.0.1 for tests: serves bytes at upstream paths, counts the requests per path, and
//! fails exactly as told (a status code, a body shorter than its Content-Length). A hand-rolled HTTP/1.1 responder
//! on a tokio TcpListener in its own thread, so both in-process tests and the kubeha binary can use it; every
//! response closes its connection, which keeps the request count exact.
#![allow(dead_code)]
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// Announces `declared` bytes in Content-Length, sends `body`, closes.
    Truncated {
        body: Vec<u8>,
        declared: usize,
    },
}

/// The replies for one path: taken in order, the last one repeated.
#[derive(Default)]
struct Route {
    replies: VecDeque<Reply>,
}

impl Route {
    fn next(&mut self) -> Reply {
        if self.replies.len() > 1 {
            self.replies.pop_front().unwrap_or(Reply::Status(500))
        } else {
            self.replies.front().cloned().unwrap_or(Reply::Status(404))
        }
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    hits: HashMap<String, usize>,
}

pub struct Mirror {
    pub base: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Mirror {
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", std_listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            tokio::spawn(answer(stream, shared.clone()));
                        }
                    }
                }
            });
        });
        Self { base, state, stop: Some(stop), thread: Some(thread) }
    }

    /// Replies for `path` (relative to the base, without a leading '/'), in order; the last one is repeated.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.state.lock().unwrap().routes.insert(format!("/{path}"), Route { replies: replies.into() });
    }

    pub fn serve(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.script(path, vec![Reply::Body(body.into())]);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(&format!("/{path}")).copied().unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }

    /// Closes the listening socket: connections are refused from then on.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(mut stream: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        s.routes.get_mut(&path).map_or(Reply::Status(404), Route::next)
    };
    let (status, body, declared) = match reply {
        Reply::Body(body) => (200, body.clone(), body.len()),
        Reply::Status(code) => (code, format!("status {code}\n").into_bytes(), 0),
        Reply::Truncated { body, declared } => (200, body, declared),
    };
    let declared = if status == 200 { declared } else { body.len() };
    let head = format!("HTTP/1.1 {status} X\r\nContent-Length: {declared}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}
