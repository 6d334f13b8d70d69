//! What a running lab recorded about itself: the PIDs to stop machines by (never by name).
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LabState {
    pub machines: BTreeMap<String, MachineState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MachineState {
    /// The systemd-nspawn process: SIGTERM to it powers the machine off cleanly.
    pub nspawn_pid: u32,
    /// The machine's init: SIGKILL to it is a power cut (SIGKILL to nspawn alone orphans the machine).
    pub leader_pid: u32,
}

impl LabState {
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is damaged; `kubeha lab down` cleans up by name", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Written through a temporary file and a rename, so a crash never leaves half a state file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}
