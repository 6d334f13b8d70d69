//! The operator's request to stop a run (Ctrl-C), as a value the executor reads at its safe points. The
//! signal handler only sets it: the executor decides where the run ends, writes the journal, releases the
//! cluster lock, and the command returns its exit code like any other.
use tokio::sync::watch;

/// How far a stop goes; each Ctrl-C goes one level further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Running,
    /// Start nothing new; let the steps under way finish.
    AfterStepsUnderWay,
    /// Abandon the steps under way too (every step is idempotent, so the next run may repeat them).
    Now,
}

/// Shared by the signal handler and the executor; clones see the same requests.
#[derive(Clone)]
pub struct Stop(watch::Sender<Level>);

impl Default for Stop {
    fn default() -> Self {
        Stop(watch::Sender::new(Level::Running))
    }
}

impl Stop {
    /// One more Ctrl-C: returns the level the run is at now.
    pub fn request(&self) -> Level {
        self.0.send_modify(|level| {
            *level = match *level {
                Level::Running => Level::AfterStepsUnderWay,
                _ => Level::Now,
            }
        });
        *self.0.borrow()
    }

    /// Checked before a step starts.
    pub fn requested(&self) -> bool {
        *self.0.borrow() >= Level::AfterStepsUnderWay
    }

    /// Resolves once the steps under way are to be abandoned; raced against each running step.
    pub async fn now(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives in self, so the channel cannot close while this waits.
        let _ = seen.wait_for(|level| *level == Level::Now).await;
    }

    /// Turns every Ctrl-C into a request until the process ends, saying what each one does.
    pub fn on_ctrl_c(&self) {
        let stop = self.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                match stop.request() {
                    Level::AfterStepsUnderWay => {
                        eprintln!("\nstopping after the steps under way (Ctrl-C again to abort at once; the next apply resumes either way)")
                    }
                    _ => eprintln!("\naborting the steps under way (the next apply repeats them)"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_request_stops_after_the_steps_under_way_and_the_second_abandons_them() {
        let stop = Stop::default();
        assert!(!stop.requested());
        assert_eq!(stop.request(), Level::AfterStepsUnderWay);
        assert!(stop.clone().requested());
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { stop.now().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(stop.request(), Level::Now);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.expect("now() resolves").unwrap();
        assert_eq!(stop.request(), Level::Now);
    }
}
