//! A Transport that writes every command, upload and read with its outcome to the host's log in the run
//! folder (through the redacting HostLog). Wrapping the seam once means no phase has to remember to log.
use super::rundir::HostLog;
use crate::ssh::{BoxFuture, Command, Output, SshError, Transport, Upload, UploadOutcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Output beyond this many bytes per stream is cut in the log (a manifest echoed back is not worth keeping).
const LOGGED_OUTPUT: usize = 16 * 1024;

pub struct Logged {
    inner: Arc<dyn Transport>,
    log: HostLog,
    /// Commands run over this connection, for the run summary.
    pub commands: AtomicUsize,
}

impl Logged {
    pub fn new(inner: Arc<dyn Transport>, log: HostLog) -> Self {
        Logged { inner, log, commands: AtomicUsize::new(0) }
    }

    fn note(&self, text: &str) {
        // A log that cannot be written must not fail the step; the run summary still reports the outcome.
        let _ = self.log.line(text);
    }
}

fn cut(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LOGGED_OUTPUT)]).into_owned();
    if bytes.len() > LOGGED_OUTPUT { format!("{text}\n[… {} more bytes]", bytes.len() - LOGGED_OUTPUT) } else { text }
}

fn log_output(log: &Logged, out: &Result<Output, SshError>) {
    match out {
        Ok(o) => {
            log.note(&format!("exit {}", o.status));
            if !o.stdout.is_empty() {
                log.note(&format!("stdout:\n{}", cut(&o.stdout)));
            }
            if !o.stderr.is_empty() {
                log.note(&format!("stderr:\n{}", cut(&o.stderr)));
            }
        }
        Err(e) => log.note(&format!("error: {e}")),
    }
}

impl Transport for Logged {
    fn host(&self) -> &str {
        self.inner.host()
    }

    fn exec<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>> {
        Box::pin(async move {
            self.commands.fetch_add(1, Ordering::Relaxed);
            self.note(&format!("$ {}", command.script));
            let out = self.inner.exec(command).await;
            log_output(self, &out);
            out
        })
    }

    fn upload<'a>(&'a self, file: &'a Upload) -> BoxFuture<'a, Result<UploadOutcome, SshError>> {
        Box::pin(async move {
            self.commands.fetch_add(1, Ordering::Relaxed);
            let out = self.inner.upload(file).await;
            match &out {
                Ok(o) => self.note(&format!("upload {} (mode {:o}, {} bytes): {o:?}", file.path, file.mode, file.contents.len())),
                Err(e) => self.note(&format!("upload {}: error: {e}", file.path)),
            }
            out
        })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SshError>> {
        Box::pin(async move {
            self.commands.fetch_add(1, Ordering::Relaxed);
            let out = self.inner.read_file(path).await;
            match &out {
                Ok(Some(b)) => self.note(&format!("read {path}: {} bytes", b.len())),
                Ok(None) => self.note(&format!("read {path}: absent")),
                Err(e) => self.note(&format!("read {path}: error: {e}")),
            }
            out
        })
    }
}
