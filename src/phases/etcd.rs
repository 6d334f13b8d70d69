//! The etcd steps: install a member's PKI and configuration, start members, change membership one member at a
//! time, and check quorum gates, all through SSH on the control planes (no route from the operator to etcd
//! is assumed). etcdctl runs on a member with /etc/kubeha/etcdctl.env.
use crate::etcd::gate::{Gate, GateFailure, View, evaluate};
use crate::etcd::status::reconfiguration_not_ready;
use crate::facts::etcd::view;
use crate::paths::{ETCD_CONFIG, ETCDCTL_ENV};
use crate::ssh::{Command, SshError, Transport, quote};
use std::time::{Duration, Instant};

/// etcd answers "not yet" to membership changes for a few seconds after any change (see
/// reconfiguration_not_ready); beyond this bound the refusal is final.
const RECONFIGURE_WITHIN: Duration = Duration::from_secs(60);
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, thiserror::Error)]
pub enum EtcdStepError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Gate(#[from] GateFailure),
    #[error("{host}: {message}")]
    Etcd { host: String, message: String },
}

/// Starts (or restarts, when its files changed) the member's etcd service and waits until systemd reports it
/// started (the unit is Type=notify: etcd says when it serves).
/// When etcd does not start, the reason is in its journal: its last lines go into the error. A member joining
/// an existing cluster gets `initial_cluster` (the members now plus itself) written into its config first.
/// The first member of a new cluster (`bootstrap`) starts with `initial-cluster-state: new`, and once it
/// serves, its config is set to `existing`: from then on the cluster exists, and should this member's data
/// directory ever be lost, etcd must fail to start rather than bootstrap a second cluster of one (etcd reads
/// the setting only when the data directory is empty, so the change needs no restart).
/// `swap`: the software phase staged a new etcd binary here; it goes in just before the (re)start and is
/// recorded as installed once the unit runs on it.
pub async fn start(t: &dyn Transport, restart: bool, initial_cluster: Option<&str>, bootstrap: bool, swap: bool) -> Result<(), EtcdStepError> {
    let verb = if restart { "restart" } else { "start" };
    let existing = "s|^initial-cluster-state:.*|initial-cluster-state: \"existing\"|";
    let join = initial_cluster.map_or(String::new(), |ic| {
        let lines = [format!("s|^initial-cluster:.*|initial-cluster: \"{ic}\"|"), existing.to_string()];
        format!("sed -i -e {} -e {} {ETCD_CONFIG} && ", quote::quote(&lines[0]), quote::quote(&lines[1]))
    });
    let settle = if bootstrap && initial_cluster.is_none() { format!(" && sed -i -e {} {ETCD_CONFIG}", quote::quote(existing)) } else { String::new() };
    let (swap_in, record) = if swap { super::software::swap_staged(crate::artifacts::catalogue::Kind::Etcd) } else { (String::new(), String::new()) };
    let script = format!(
        "{swap_in}{join}systemctl daemon-reload && systemctl enable etcd.service >/dev/null 2>&1; {{ systemctl {verb} etcd.service{settle}{record}; }} || \
         {{ status=$?; journalctl -u etcd.service -n 12 --no-pager -o cat >&2; exit $status; }}"
    );
    let out = t.exec(&Command::script(script).timeout(Duration::from_secs(120))).await?;
    if out.status.success() {
        return Ok(());
    }
    Err(EtcdStepError::Etcd { host: t.host().into(), message: format!("etcd did not {verb}:\n{}", String::from_utf8_lossy(&out.stderr).trim()) })
}

/// etcdctl on a member, talking to that member only: with every member as endpoint the client may pick a
/// learner, which refuses most requests ("rpc not supported for learner"). Steps run on a voting member.
/// (The variable is overridden rather than given as a flag: etcdctl refuses a flag that shadows its variable.)
pub(crate) fn etcdctl(args: &[&str]) -> Command {
    etcdctl_at(LOCAL_ENDPOINT, args)
}

/// etcdctl on a member, talking to `endpoint` only (a request only the leader serves names the leader).
fn etcdctl_at(endpoint: &str, args: &[&str]) -> Command {
    let words = quote::join(args.iter().copied());
    Command::script(format!("{} {ETCDCTL} {words}", etcdctl_env(ETCDCTL_ENV, endpoint))).timeout(ETCDCTL_TIMEOUT)
}

/// The program with kubeha's bounds: a member that does not answer fails fast instead of hanging a step.
const ETCDCTL: &str = "etcdctl --dial-timeout=3s --command-timeout=10s";

/// The member's own client URL, as its host reaches it.
pub const LOCAL_ENDPOINT: &str = "https://127.0.0.1:2379";

/// The shell prefix that gives etcdctl the variables of `env_file`, talking to `endpoint` only.
pub fn etcdctl_env(env_file: &str, endpoint: &str) -> String {
    format!("set -a; . {}; ETCDCTL_ENDPOINTS={}; set +a;", quote::quote(env_file), quote::quote(endpoint))
}

/// `etcdctl member list -w json`, answered by the member itself (`--consistency=s`): since etcd 3.6 the list
/// is linearizable by default and fails without quorum, exactly when kubeha must still see who the members
/// are. etcdctl 3.5 has no such flag (its list is served locally anyway), hence the fallback; it prints its
/// usage on stdout when it refuses the flag, so the first attempt's output is kept only when it succeeded.
fn member_list() -> Command {
    let env = etcdctl_env(ETCDCTL_ENV, LOCAL_ENDPOINT);
    let base = format!("{ETCDCTL} member list -w json");
    Command::script(format!("{env} if out=$({base} --consistency=s 2>/dev/null); then printf '%s\\n' \"$out\"; else {base}; fi")).timeout(ETCDCTL_TIMEOUT)
}

/// `etcdctl member list -w json` on `t`, as text.
pub(crate) async fn member_list_json(t: &dyn Transport) -> Result<String, EtcdStepError> {
    let members = t.exec(&member_list()).await?;
    if !members.status.success() {
        return Err(EtcdStepError::Etcd {
            host: t.host().into(),
            message: format!("etcdctl member list failed: {}", String::from_utf8_lossy(&members.stderr).trim()),
        });
    }
    Ok(members.stdout_text())
}

/// The members only: what membership changes check before they act (cheap even with a member down).
async fn members(t: &dyn Transport) -> Result<Vec<crate::etcd::status::Member>, EtcdStepError> {
    crate::etcd::status::parse_member_list(&member_list_json(t).await?).map_err(|e| EtcdStepError::Etcd { host: t.host().into(), message: e.to_string() })
}

pub async fn gate(t: &dyn Transport, gate: &Gate) -> Result<(), EtcdStepError> {
    evaluate(gate, &view(t).await?)?;
    Ok(())
}

/// Runs a membership change, retrying only etcd's "not yet" answers, within RECONFIGURE_WITHIN.
async fn reconfigure(t: &dyn Transport, args: &[&str]) -> Result<String, EtcdStepError> {
    let started = Instant::now();
    loop {
        let out = t.exec(&etcdctl(args)).await?;
        if out.status.success() {
            return Ok(out.stdout_text());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !reconfiguration_not_ready(&stderr) || started.elapsed() > RECONFIGURE_WITHIN {
            return Err(EtcdStepError::Etcd { host: t.host().into(), message: format!("etcdctl {} refused: {stderr}", args.join(" ")) });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Adds a member as a non-voting learner: it cannot affect quorum until it is promoted.
pub async fn add_learner(t: &dyn Transport, name: &str, peer_url: &str) -> Result<(), EtcdStepError> {
    if members(t).await?.iter().any(|m| m.is_of(name, peer_url)) {
        return Ok(()); // added by an earlier, interrupted run
    }
    reconfigure(t, &["member", "add", name, "--learner", &format!("--peer-urls={peer_url}")]).await.map(|_| ())
}

/// Removes the member with etcd ID `id` (hex); one that is already gone was removed by an earlier run.
pub async fn remove(t: &dyn Transport, id: &str) -> Result<(), EtcdStepError> {
    if !members(t).await?.iter().any(|m| format!("{:x}", m.id) == id) {
        return Ok(());
    }
    reconfigure(t, &["member", "remove", id]).await.map(|_| ())
}

/// Sets the peer URL of the member with etcd ID `id` (hex); returns whether it changed (an earlier,
/// interrupted run may have done it already). A member already gone is an error: the plan expected it.
pub async fn update_peer_url(t: &dyn Transport, id: &str, peer_url: &str) -> Result<bool, EtcdStepError> {
    let listed = members(t).await?;
    let Some(m) = listed.iter().find(|m| format!("{:x}", m.id) == id) else {
        return Err(EtcdStepError::Etcd { host: t.host().to_string(), message: format!("member {id} is no longer in the cluster; run `kubeha plan` again") });
    };
    if m.peer_urls.len() == 1 && m.peer_urls[0] == peer_url {
        return Ok(false);
    }
    reconfigure(t, &["member", "update", id, &format!("--peer-urls={peer_url}")]).await.map(|_| true)
}

/// A leadership transfer ends within a few heartbeats (100 ms each by default); beyond this it failed.
const LEADER_MOVED_WITHIN: Duration = Duration::from_secs(15);

/// Moves etcd's leadership away from member `from` if it leads (see crate::etcd::leader), asked on `t`,
/// and waits until another member leads. Returns whether leadership moved.
pub async fn move_leader_away(t: &dyn Transport, from: &str) -> Result<bool, EtcdStepError> {
    use crate::etcd::leader::{NoTransfer, away_from};
    let transfer = match away_from(&view(t).await?, from) {
        Ok(transfer) => transfer,
        Err(NoTransfer::NotLeader) => return Ok(false),
        Err(NoTransfer::NoCandidate(why)) => return Err(EtcdStepError::Etcd { host: t.host().into(), message: why }),
    };
    // etcdctl hands over only when it talks to the leader itself.
    let out = t.exec(&etcdctl_at(&transfer.leader_endpoint, &["move-leader", &transfer.to_id])).await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(EtcdStepError::Etcd { host: t.host().into(), message: format!("etcdctl move-leader to {} refused: {stderr}", transfer.to) });
    }
    let started = Instant::now();
    loop {
        let v = view(t).await?;
        match crate::etcd::leader::leader(&v) {
            Some(leader) if leader != from => return Ok(true),
            _ if started.elapsed() > LEADER_MOVED_WITHIN => {
                return Err(EtcdStepError::Etcd {
                    host: t.host().into(),
                    message: format!("{from} still leads {} s after handing over to {} ({})", LEADER_MOVED_WITHIN.as_secs(), transfer.to, describe(&v)),
                });
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Stops etcd on a host that is not a member and moves its old data aside, so it joins afresh.
pub async fn clear_data(t: &dyn Transport) -> Result<(), SshError> {
    let script = format!("systemctl stop etcd.service; systemctl reset-failed etcd.service >/dev/null 2>&1; {}", super::retire::move_etcd_data_aside("stale"));
    t.run(&Command::script(script).timeout(Duration::from_secs(60))).await.map(|_| ())
}

/// A learner is caught up when its applied index is within a few entries of the leader's log. Promotion
/// re-checks this strictly inside etcd; this wait only avoids asking too early.
const CAUGHT_UP_SLACK: u64 = 16;
const CATCH_UP_WITHIN: Duration = Duration::from_secs(120);

pub async fn wait_caught_up(t: &dyn Transport, name: &str) -> Result<(), EtcdStepError> {
    let started = Instant::now();
    loop {
        let v = view(t).await?;
        let leader_index = v.statuses.iter().find(|s| s.member_id == s.leader).map(|s| s.raft_index);
        let member = v.members.iter().find(|m| m.name == name);
        let applied = member.and_then(|m| v.statuses.iter().find(|s| s.member_id == m.id)).map(|s| s.raft_applied_index);
        if let (Some(applied), Some(leader)) = (applied, leader_index)
            && applied + CAUGHT_UP_SLACK >= leader
        {
            return Ok(());
        }
        if started.elapsed() > CATCH_UP_WITHIN {
            return Err(EtcdStepError::Etcd {
                host: t.host().into(),
                message: format!("learner {name} did not catch up within {} s ({})", CATCH_UP_WITHIN.as_secs(), describe(&v)),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// etcd raises its cluster version within a few of its version checks (every 4 s in 3.5 and 3.6) after
/// the last member runs the new minor.
const CLUSTER_VERSION_WITHIN: Duration = Duration::from_secs(90);

/// `/version` of this member, with etcdctl's client certificate: `{"etcdserver":"3.6.16","etcdcluster":"3.6.0"}`.
fn version_request() -> Command {
    Command::script(format!(
        "set -a; . {}; set +a; curl -sS --max-time 5 --cacert \"$ETCDCTL_CACERT\" --cert \"$ETCDCTL_CERT\" --key \"$ETCDCTL_KEY\" {LOCAL_ENDPOINT}/version",
        quote::quote(ETCDCTL_ENV)
    ))
    .timeout(ETCDCTL_TIMEOUT)
}

/// The cluster version of a `/version` answer, as major.minor.
pub fn parse_cluster_version(answer: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        etcdcluster: String,
    }
    let v = serde_json::from_str::<Answer>(answer).ok()?.etcdcluster;
    let mut parts = v.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// Waits until etcd's cluster version is `version` (major.minor).
pub async fn wait_cluster_version(t: &dyn Transport, version: &str) -> Result<(), EtcdStepError> {
    let started = Instant::now();
    loop {
        let out = t.exec(&version_request()).await?;
        let seen = parse_cluster_version(&out.stdout_text());
        if seen.as_deref() == Some(version) {
            return Ok(());
        }
        if started.elapsed() > CLUSTER_VERSION_WITHIN {
            let last = seen.map_or_else(|| format!("/version answered {:?}", out.stdout_text().trim()), |v| format!("it is {v}"));
            return Err(EtcdStepError::Etcd {
                host: t.host().into(),
                message: format!(
                    "etcd's cluster version did not reach {version} within {} s ({last}); a member still runs an older release?",
                    CLUSTER_VERSION_WITHIN.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Promotes the learner once it has caught up with the leader (etcd refuses earlier; that refusal is retried).
pub async fn promote(t: &dyn Transport, name: &str) -> Result<(), EtcdStepError> {
    let current = members(t).await?;
    let Some(member) = current.iter().find(|m| m.name == name) else {
        return Err(EtcdStepError::Etcd { host: t.host().into(), message: format!("member {name} is not in the cluster; cannot promote it") });
    };
    if !member.is_learner {
        return Ok(());
    }
    reconfigure(t, &["member", "promote", &format!("{:x}", member.id)]).await.map(|_| ())
}

/// The members by name (or peer URL while unnamed), learners marked, for messages.
pub fn describe(view: &View) -> String {
    view.members.iter().map(|m| format!("{}{}", m.label(), if m.is_learner { " (learner)" } else { "" })).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    /// The first member of a new cluster leaves no `new` behind: once it serves, its config says `existing`
    /// (the same edit as a join's), so losing its data later cannot bootstrap a second cluster.
    #[tokio::test]
    async fn a_bootstrapped_member_s_config_says_existing_once_it_serves() {
        let fake = RecordingTransport::new("cp-1").on("systemctl", "");
        start(&fake, false, None, true, false).await.unwrap();
        start(&fake, true, None, false, false).await.unwrap();
        let scripts = fake.scripts();
        let edit = format!("systemctl start etcd.service && sed -i -e 's|^initial-cluster-state:.*|initial-cluster-state: \"existing\"|' {ETCD_CONFIG}");
        assert!(scripts[0].contains(&edit), "{}", scripts[0]);
        assert!(!scripts[1].contains("sed"), "a restart of a member edits nothing: {}", scripts[1]);

        // The edit, run on a rendered config, gives what the probe and the planner read as `existing`.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd.conf.yml");
        std::fs::write(&file, "name: \"cp-1\"\ninitial-cluster: \"cp-1=https://a:2380\"\ninitial-cluster-state: \"new\"\n").unwrap();
        let sed = edit.split("&& ").nth(1).unwrap().replace(ETCD_CONFIG, &file.to_string_lossy());
        assert!(std::process::Command::new("sh").arg("-c").arg(&sed).status().unwrap().success());
        let edited = std::fs::read(&file).unwrap();
        assert_eq!(crate::facts::observe::initial_cluster_state(&edited), "existing");
        assert!(String::from_utf8_lossy(&edited).contains("initial-cluster: \"cp-1=https://a:2380\"\n"));
    }
}
