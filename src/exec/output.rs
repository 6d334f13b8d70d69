//! Progress for the human at the terminal: live spinners per host when stderr is a terminal, plain timestamped
//! lines otherwise (CI logs, `| tee`). Everything goes to stderr: stdout carries the JSON summary or plan text
//! that scripts read.
use super::clock;
use super::redact::Redactor;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const BAR_TEMPLATE: &str = "{spinner} {prefix:12} {wide_msg}";
const TICK: Duration = Duration::from_millis(100);
/// The bar of steps that run on no particular host (generating the etcd PKI, quorum gates decided locally).
const CLUSTER: &str = "cluster";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// One live spinner per host; needs a terminal.
    Bars,
    /// One timestamped line per event.
    Lines,
    Quiet,
}

impl ProgressMode {
    pub fn detect() -> Self {
        if io::stderr().is_terminal() { ProgressMode::Bars } else { ProgressMode::Lines }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    Changed,
    Unchanged,
    Failed(String),
}

/// Cheap to clone: clones report into the same display, so every task of a run can hold one.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Shared>,
}

struct Shared {
    mode: ProgressMode,
    redactor: Arc<Redactor>,
    /// Where Lines mode writes; stderr unless a test captures it.
    lines_out: Mutex<Box<dyn Write + Send>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    phase: Option<PhaseState>,
    /// Steps under way, by (host, step id): for the elapsed time and the bar's final message. Unscrubbed: text is
    /// scrubbed once, on its way out, since scrubbing twice could find a secret in `[redacted]` itself.
    running: HashMap<(String, String), RunningStep>,
}

struct PhaseState {
    name: String,
    started: Instant,
    /// A fresh one per phase: the finished bars of earlier phases stay on screen as their summary.
    multi: MultiProgress,
    bars: Vec<HostBar>,
}

struct HostBar {
    host: String,
    bar: ProgressBar,
    /// Kept after later steps succeed, so the bar ends with ✘ and the reason.
    failure: Option<String>,
}

struct RunningStep {
    started: Instant,
    what: String,
}

impl Progress {
    pub fn new(mode: ProgressMode, redactor: Arc<Redactor>) -> Self {
        let shared = Shared { mode, redactor, lines_out: Mutex::new(Box::new(io::stderr())), state: Mutex::default() };
        Progress { shared: Arc::new(shared) }
    }

    /// Lines mode writes here instead of stderr (the other modes ignore it). Affects every clone.
    pub fn with_writer(self, out: Box<dyn Write + Send>) -> Self {
        *locked(&self.shared.lines_out) = out;
        self
    }

    pub fn mode(&self) -> ProgressMode {
        self.shared.mode
    }

    pub fn phase(&self, name: &str, title: &str, hosts: &[String]) {
        let header = format!("phase {name}: {title}");
        let mut state = self.state();
        // A phase left open (its caller bailed out early) would keep its spinners turning under the new one.
        self.finish_phase(&mut state);
        let phase = PhaseState { name: name.to_string(), started: Instant::now(), multi: MultiProgress::new(), bars: Vec::new() };
        match self.shared.mode {
            ProgressMode::Bars => {
                let _ = phase.multi.println(self.scrub(&header));
                let phase = state.phase.insert(phase);
                for host in hosts {
                    phase.bar(host);
                }
            }
            ProgressMode::Lines => {
                self.line(&header);
                state.phase = Some(phase);
            }
            ProgressMode::Quiet => state.phase = Some(phase),
        }
    }

    pub fn step_started(&self, host: Option<&str>, step_id: &str, what: &str) {
        let host = host.unwrap_or(CLUSTER);
        let mut state = self.state();
        state.running.insert((host.to_string(), step_id.to_string()), RunningStep { started: Instant::now(), what: what.to_string() });
        match self.shared.mode {
            ProgressMode::Bars => {
                if let Some(phase) = &mut state.phase {
                    phase.bar(host).bar.set_message(self.scrub(what));
                }
            }
            ProgressMode::Lines => self.line(&format!("[{host}] start {step_id}: {what}")),
            ProgressMode::Quiet => {}
        }
    }

    pub fn step_finished(&self, host: Option<&str>, step_id: &str, outcome: &StepOutcome) {
        let host = host.unwrap_or(CLUSTER);
        let mut state = self.state();
        let running = state.running.remove(&(host.to_string(), step_id.to_string()));
        let took = running.as_ref().map(|r| format!("{:.1} s", r.started.elapsed().as_secs_f64()));
        let what = running.map_or_else(|| step_id.to_string(), |r| r.what);
        match self.shared.mode {
            ProgressMode::Bars => {
                if let Some(phase) = &mut state.phase {
                    let host_bar = phase.bar(host);
                    match outcome {
                        StepOutcome::Failed(error) => {
                            let message = self.scrub(&format!("{what}: FAILED: {error}"));
                            host_bar.bar.set_message(message.clone());
                            host_bar.failure = Some(message);
                        }
                        StepOutcome::Changed | StepOutcome::Unchanged => {
                            host_bar.bar.set_message(self.scrub(&format!("{what} ({})", with_time(outcome_word(outcome), took.as_deref()))))
                        }
                    }
                }
            }
            ProgressMode::Lines => {
                let text = match outcome {
                    StepOutcome::Failed(error) => {
                        let took = took.map(|t| format!(" ({t})")).unwrap_or_default();
                        format!("[{host}] FAILED {step_id}{took}: {error}")
                    }
                    StepOutcome::Changed | StepOutcome::Unchanged => {
                        format!("[{host}] done {step_id} ({})", with_time(outcome_word(outcome), took.as_deref()))
                    }
                };
                self.line(&text);
            }
            ProgressMode::Quiet => {}
        }
    }

    pub fn phase_finished(&self) {
        self.finish_phase(&mut self.state());
    }

    fn finish_phase(&self, state: &mut State) {
        state.running.clear();
        let Some(phase) = state.phase.take() else { return };
        let took = phase.started.elapsed().as_secs_f64();
        match self.shared.mode {
            ProgressMode::Bars => {
                for host_bar in &phase.bars {
                    let (mark, message) = match &host_bar.failure {
                        Some(failure) => ("✘", failure.clone()),
                        None => ("✔", host_bar.bar.message()),
                    };
                    host_bar.bar.finish_with_message(format!("{mark} {message}"));
                }
            }
            ProgressMode::Lines => self.line(&format!("phase {} done in {took:.1} s", phase.name)),
            ProgressMode::Quiet => {}
        }
    }

    /// A line of its own, e.g. "resuming after interrupted run X".
    pub fn note(&self, text: &str) {
        match self.shared.mode {
            ProgressMode::Bars => {
                let state = self.state();
                match &state.phase {
                    // Above the bars, which println keeps intact.
                    Some(phase) => {
                        let _ = phase.multi.println(self.scrub(text));
                    }
                    None => {
                        let _ = writeln!(io::stderr(), "{}", self.scrub(text));
                    }
                }
            }
            // Not through MultiProgress: its println prints nothing when the bars are hidden, as they are off a terminal.
            ProgressMode::Lines => self.line(text),
            ProgressMode::Quiet => {}
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        locked(&self.shared.state)
    }

    fn scrub(&self, text: &str) -> String {
        self.shared.redactor.scrub(text)
    }

    /// Every physical line gets the timestamp, so log readers can rely on it. Write errors (a closed pipe) are
    /// ignored: losing progress output is no reason to stop changing a cluster half way.
    fn line(&self, text: &str) {
        let at = clock::now();
        let mut record = String::new();
        for line in self.scrub(text).trim_end_matches('\n').split('\n') {
            record.push_str(&at);
            record.push(' ');
            record.push_str(line);
            record.push('\n');
        }
        let mut out = locked(&self.shared.lines_out);
        let _ = out.write_all(record.as_bytes()).and_then(|()| out.flush());
    }
}

impl PhaseState {
    /// The host's bar, created on first use for hosts the phase did not announce (and for "cluster").
    fn bar(&mut self, host: &str) -> &mut HostBar {
        let index = match self.bars.iter().position(|b| b.host == host) {
            Some(index) => index,
            None => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                // The template is a constant; should it ever be rejected, the default spinner still works.
                if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
                    bar.set_style(style);
                }
                bar.set_prefix(host.to_string());
                bar.enable_steady_tick(TICK);
                self.bars.push(HostBar { host: host.to_string(), bar, failure: None });
                self.bars.len() - 1
            }
        };
        &mut self.bars[index]
    }
}

fn outcome_word(outcome: &StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Changed => "changed",
        StepOutcome::Unchanged => "unchanged",
        StepOutcome::Failed(_) => "failed",
    }
}

fn with_time(word: &str, took: Option<&str>) -> String {
    match took {
        Some(took) => format!("{word}, {took}"),
        None => word.to_string(),
    }
}

/// Progress output must not die with a task that panicked while reporting.
fn locked<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back after `Progress` has taken ownership of its clone.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            locked(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// The lines without their timestamps, after checking each has one; durations replaced by `N.N`.
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8_lossy(&locked(&self.0)).into_owned();
            text.lines()
                .map(|line| {
                    let (at, rest) = line.split_once(' ').unwrap_or_default();
                    assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(), "{line}");
                    without_durations(rest)
                })
                .collect()
        }
    }

    fn without_durations(text: &str) -> String {
        text.split(' ')
            .map(|word| {
                let digits = word.trim_matches(['(', ',', ')']);
                if digits.contains('.') && digits.parse::<f64>().is_ok() { word.replacen(digits, "N.N", 1) } else { word.to_string() }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn lines_progress(secrets: &[&str]) -> (Progress, Captured) {
        let captured = Captured::default();
        let redactor = Arc::new(Redactor::new(secrets.iter().map(|s| s.to_string())));
        (Progress::new(ProgressMode::Lines, redactor).with_writer(Box::new(captured.clone())), captured)
    }

    #[test]
    fn lines_mode_reports_every_event() {
        let (progress, out) = lines_progress(&[]);
        let hosts = vec!["cp-1".to_string(), "cp-2".to_string()];
        progress.phase("etcd", "etcd, one member at a time", &hosts);
        progress.step_started(Some("cp-1"), "etcd/cp-1/start", "start etcd member cp-1");
        progress.step_finished(Some("cp-1"), "etcd/cp-1/start", &StepOutcome::Changed);
        progress.step_started(None, "etcd/gate", "quorum gate");
        progress.step_finished(None, "etcd/gate", &StepOutcome::Unchanged);
        progress.step_started(Some("cp-2"), "etcd/cp-2/start", "start etcd member cp-2");
        progress.step_finished(Some("cp-2"), "etcd/cp-2/start", &StepOutcome::Failed("timed out".into()));
        progress.note("resuming after interrupted run r1");
        progress.phase_finished();
        assert_eq!(
            out.lines(),
            [
                "phase etcd: etcd, one member at a time",
                "[cp-1] start etcd/cp-1/start: start etcd member cp-1",
                "[cp-1] done etcd/cp-1/start (changed, N.N s)",
                "[cluster] start etcd/gate: quorum gate",
                "[cluster] done etcd/gate (unchanged, N.N s)",
                "[cp-2] start etcd/cp-2/start: start etcd member cp-2",
                "[cp-2] FAILED etcd/cp-2/start (N.N s): timed out",
                "resuming after interrupted run r1",
                "phase etcd done in N.N s",
            ]
        );
    }

    #[test]
    fn lines_mode_scrubs_secrets() {
        let (progress, out) = lines_progress(&["abcdef.0123456789abcdef"]);
        progress.step_started(Some("cp-2"), "kubeadm/cp-2/join", "kubeadm join --token abcdef.0123456789abcdef");
        progress.step_finished(Some("cp-2"), "kubeadm/cp-2/join", &StepOutcome::Failed("token abcdef.0123456789abcdef rejected".into()));
        progress.note("token abcdef.0123456789abcdef expires in 23 h");
        assert_eq!(
            out.lines(),
            [
                "[cp-2] start kubeadm/cp-2/join: kubeadm join --token [redacted]",
                "[cp-2] FAILED kubeadm/cp-2/join (N.N s): token [redacted] rejected",
                "token [redacted] expires in 23 h",
            ]
        );
    }

    #[test]
    fn a_step_finished_without_a_start_has_no_duration() {
        let (progress, out) = lines_progress(&[]);
        progress.step_finished(Some("cp-1"), "host/cp-1", &StepOutcome::Unchanged);
        assert_eq!(out.lines(), ["[cp-1] done host/cp-1 (unchanged)"]);
    }

    #[test]
    fn multi_line_messages_keep_a_timestamp_on_every_line() {
        let (progress, out) = lines_progress(&[]);
        progress.note("first\nsecond\n");
        assert_eq!(out.lines(), ["first", "second"]);
    }

    #[test]
    fn quiet_mode_writes_nothing() {
        let captured = Captured::default();
        let progress = Progress::new(ProgressMode::Quiet, Arc::default()).with_writer(Box::new(captured.clone()));
        progress.phase("etcd", "etcd", &["cp-1".to_string()]);
        progress.step_started(Some("cp-1"), "s", "x");
        progress.step_finished(Some("cp-1"), "s", &StepOutcome::Changed);
        progress.note("n");
        progress.phase_finished();
        assert!(captured.lines().is_empty());
    }

    #[test]
    fn bars_mode_ends_each_bar_with_its_outcome() {
        // Off a terminal indicatif draws nothing, but the bars' messages are still kept.
        let progress = Progress::new(ProgressMode::Bars, Arc::new(Redactor::new(["s3cr3t-token".to_string()])));
        progress.phase("etcd", "etcd", &["cp-1".to_string(), "cp-2".to_string()]);
        progress.step_started(Some("cp-1"), "a", "install s3cr3t-token");
        progress.step_finished(Some("cp-1"), "a", &StepOutcome::Changed);
        progress.step_started(Some("cp-2"), "b", "start");
        progress.step_finished(Some("cp-2"), "b", &StepOutcome::Failed("refused".into()));
        progress.step_started(Some("cp-2"), "c", "later step");
        progress.step_started(None, "d", "gate");
        let bars: Vec<(String, ProgressBar)> = {
            let state = progress.state();
            state.phase.as_ref().map(|p| p.bars.iter().map(|b| (b.host.clone(), b.bar.clone())).collect()).unwrap_or_default()
        };
        // Starting the next phase finishes the open one.
        progress.phase("cni", "network", &[]);
        let finished: Vec<(String, String)> = bars.iter().map(|(host, bar)| (host.clone(), without_durations(&bar.message()))).collect();
        assert_eq!(
            finished,
            [
                ("cp-1".to_string(), "✔ install [redacted] (changed, N.N s)".to_string()),
                ("cp-2".to_string(), "✘ start: FAILED: refused".to_string()),
                ("cluster".to_string(), "✔ gate".to_string())
            ]
        );
        assert!(bars.iter().all(|(_, bar)| bar.is_finished()));
    }

    #[test]
    fn shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Progress>();
    }
}
