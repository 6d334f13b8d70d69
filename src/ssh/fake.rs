//! A recording fake [`Transport`] for unit tests of the layers above: it records every effect in order,
//! answers exec from scripted responses, and keeps uploaded files in memory. It runs nothing, unless asked
//! to run unanswered scripts in a local `sh` (for shell snippets whose logic is the thing under test).
use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{BoxFuture, Command, ExitStatus, Output, SshError, Transport, Upload, UploadOutcome};

/// One effect the code under test asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Exec { script: String, stdin: Option<Vec<u8>>, as_root: bool },
    Upload { path: String, contents: Vec<u8>, mode: u32, owner: Option<String> },
    Read { path: String },
}

type Response = Result<Output, SshError>;
/// Contents, mode, owner.
type StoredFile = (Vec<u8>, u32, Option<String>);

pub struct RecordingTransport {
    name: String,
    log: Mutex<Vec<Recorded>>,
    /// (substring of the script, response); the first match wins, and stays (not consumed).
    responses: Mutex<Vec<(String, Response)>>,
    files: Mutex<BTreeMap<String, StoredFile>>,
    /// Scripts that no response matches run in a local `sh` as the test's user, in this directory (see
    /// `with_local_shell`).
    local_shell: Option<std::path::PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RecordingTransport {
    pub fn new(name: impl Into<String>) -> Self {
        RecordingTransport { name: name.into(), log: Mutex::default(), responses: Mutex::default(), files: Mutex::default(), local_shell: None }
    }

    /// Commands whose script contains `needle` succeed with this stdout.
    pub fn on(self, needle: impl Into<String>, stdout: impl Into<Vec<u8>>) -> Self {
        self.respond(needle, Ok(Output { status: ExitStatus::Code(0), stdout: stdout.into(), stderr: Vec::new() }))
    }

    /// Commands whose script contains `needle` get this response (an exit status, or an error).
    pub fn respond(self, needle: impl Into<String>, response: Response) -> Self {
        lock(&self.responses).push((needle.into(), response));
        self
    }

    /// `respond` on a fake already in use (a host that stops answering halfway through a test); unlike
    /// `respond`, this response wins over every earlier one.
    pub fn add_response(&self, needle: impl Into<String>, response: Response) {
        lock(&self.responses).insert(0, (needle.into(), response));
    }

    /// Unanswered scripts run in a local `sh` (stdin fed, output captured) in `dir` instead of succeeding
    /// silently: relative paths in the script then stand for this host's own files. No root, no timeout.
    pub fn with_local_shell(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.local_shell = Some(dir.into());
        self
    }

    pub fn with_file(self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        lock(&self.files).insert(path.into(), (contents.into(), 0o644, None));
        self
    }

    /// Everything recorded so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.log).clone()
    }

    /// Just the scripts of exec calls, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::Exec { script, .. } => Some(script),
                _ => None,
            })
            .collect()
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.files).get(path).map(|(c, _, _)| c.clone())
    }
}

impl Transport for RecordingTransport {
    fn host(&self) -> &str {
        &self.name
    }

    fn exec<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>> {
        lock(&self.log).push(Recorded::Exec { script: command.script.clone(), stdin: command.stdin.clone(), as_root: command.as_root });
        let response = lock(&self.responses).iter().find(|(needle, _)| command.script.contains(needle.as_str())).map(|(_, r)| r.clone()).unwrap_or_else(|| {
            match &self.local_shell {
                Some(dir) => Ok(run_locally(command, dir)),
                None => Ok(Output { status: ExitStatus::Code(0), stdout: Vec::new(), stderr: Vec::new() }),
            }
        });
        Box::pin(async move { response })
    }

    fn upload<'a>(&'a self, file: &'a Upload) -> BoxFuture<'a, Result<UploadOutcome, SshError>> {
        lock(&self.log).push(Recorded::Upload { path: file.path.clone(), contents: file.contents.clone(), mode: file.mode, owner: file.owner.clone() });
        let wanted = (file.contents.clone(), file.mode, file.owner.clone());
        let mut files = lock(&self.files);
        let outcome = if files.get(&file.path) == Some(&wanted) {
            UploadOutcome::Unchanged
        } else {
            files.insert(file.path.clone(), wanted);
            UploadOutcome::Written
        };
        Box::pin(async move { Ok(outcome) })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SshError>> {
        lock(&self.log).push(Recorded::Read { path: path.to_string() });
        let contents = self.file(path);
        Box::pin(async move { Ok(contents) })
    }
}

/// Blocking on purpose: tests only, and a snippet that hangs should hang the test visibly.
fn run_locally(command: &Command, dir: &std::path::Path) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let spawned = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command.script)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let result = spawned.and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(command.stdin.as_deref().unwrap_or_default())?;
        }
        child.wait_with_output()
    });
    match result {
        Ok(out) => {
            let status = out.status.code().and_then(|c| u32::try_from(c).ok()).map_or(ExitStatus::Unknown, ExitStatus::Code);
            Output { status, stdout: out.stdout, stderr: out.stderr }
        }
        Err(e) => Output { status: ExitStatus::Code(127), stdout: Vec::new(), stderr: format!("sh could not run: {e}").into_bytes() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_answers() {
        let fake = RecordingTransport::new("cp1")
            .on("uname", "Linux\n")
            .respond("false", Ok(Output { status: ExitStatus::Code(1), stdout: Vec::new(), stderr: b"nope".to_vec() }));
        let out = fake.exec(&Command::argv(["uname", "-s"])).await.unwrap();
        assert_eq!(out.stdout_text(), "Linux\n");
        let err = fake.run(&Command::script("false")).await.unwrap_err();
        assert!(matches!(err, SshError::CommandFailed { ref host, .. } if host == "cp1"), "{err}");
        assert!(err.to_string().contains("`false` failed with exit status 1: nope"), "{err}");
        assert_eq!(fake.scripts(), vec!["uname -s".to_string(), "false".to_string()]);
    }

    #[tokio::test]
    async fn upload_is_skipped_when_identical() {
        let fake = RecordingTransport::new("cp1");
        let up = Upload { path: "/etc/x".into(), contents: b"a".to_vec(), mode: 0o600, owner: None };
        assert_eq!(fake.upload(&up).await.unwrap(), UploadOutcome::Written);
        assert_eq!(fake.upload(&up).await.unwrap(), UploadOutcome::Unchanged);
        assert_eq!(fake.read_file("/etc/x").await.unwrap(), Some(b"a".to_vec()));
        assert_eq!(fake.read_file("/etc/y").await.unwrap(), None);
        assert_eq!(fake.recorded().len(), 4);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = Command::script("kubeadm join --config /dev/stdin").stdin(b"token-abc".to_vec());
        let u = Upload { path: "/etc/k".into(), contents: b"PRIVATE KEY".to_vec(), mode: 0o600, owner: None };
        let shown = format!("{c:?} {u:?}");
        assert!(!shown.contains("token-abc") && !shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("<9 bytes>") && shown.contains("mode: 600"), "{shown}");
    }

    #[tokio::test]
    async fn unanswered_scripts_can_run_in_a_local_shell_in_the_hosts_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = RecordingTransport::new("cp1").on("answered", "canned\n").with_local_shell(tmp.path());
        let out = fake.exec(&Command::script("cat > f && cat f && exit 3").stdin(b"in".to_vec())).await.unwrap();
        assert_eq!((out.status, out.stdout), (ExitStatus::Code(3), b"in".to_vec()));
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"in");
        assert_eq!(fake.exec(&Command::script("echo answered")).await.unwrap().stdout_text(), "canned\n");
    }

    #[tokio::test]
    async fn usable_as_a_trait_object() {
        let fake: std::sync::Arc<dyn Transport> = std::sync::Arc::new(RecordingTransport::new("w1"));
        assert!(fake.exec(&Command::script("true")).await.unwrap().status.success());
    }
}
