//! One connection per host, opened in parallel with a bound, reused for every command.
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::bastion::Connector;
use super::{ConnectOptions, HostTarget, SshError, SshSession};

/// A host name and its connection outcome.
pub type Connected = (String, Result<Arc<SshSession>, SshError>);

/// Connect to every target with bounded concurrency; results come back in the order of `targets`.
pub async fn connect_each(targets: &[HostTarget], opts: &ConnectOptions) -> Vec<Connected> {
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let connector = Arc::new(Connector::new());
    let mut tasks = JoinSet::new();
    for (index, target) in targets.iter().cloned().enumerate() {
        let (limit, connector, opts) = (limit.clone(), connector.clone(), opts.clone());
        tasks.spawn(async move {
            // The semaphore is never closed, so acquire only fails if that invariant breaks.
            let _permit = limit.acquire_owned().await.expect("semaphore is never closed");
            let result = connector.connect(&target, &opts).await.map(Arc::new);
            (index, target.name, result)
        });
    }
    let mut results: Vec<Option<Connected>> = targets.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, name, result)) => results[index] = Some((name, result)),
            // A panicking connect task is a bug; surface it instead of silently losing a host.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results.into_iter().flatten().collect()
}
