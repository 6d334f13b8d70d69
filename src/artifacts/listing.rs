//! `artifacts list`: what would be fetched, from where, for which hosts, with which checksum. No network: over HTTP
//! the checksum is only known once the published checksum file is read, so the listing names that file instead;
//! from a bundle it is the manifest's sha256.
use super::bundle::Bundle;
use super::catalogue::{self, Base, Packaging, Scope};
use super::checksum::Algorithm;
use super::error::ArtifactError;
use crate::inventory::{ArtifactSource, Inventory};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub name: &'static str,
    pub version: String,
    pub arch: &'static str,
    pub packaging: Packaging,
    pub provides: &'static [&'static str],
    pub scope: Scope,
    pub hosts: Vec<String>,
    /// A URL, or a path inside the bundle.
    pub from: String,
    pub checksum: ListedChecksum,
}

#[derive(Clone, Debug, Serialize)]
pub struct ListedChecksum {
    pub algorithm: Algorithm,
    /// Known without a download only from a bundle's manifest.
    pub value: Option<String>,
    /// The published checksum file (HTTP) or the bundle's manifest.
    pub from: String,
}

pub fn list(inv: &Inventory) -> Result<Vec<Listed>, ArtifactError> {
    let bundle = match &inv.artifacts.source {
        ArtifactSource::Bundle(dir) => Some(Bundle::open(dir)?),
        _ => None,
    };
    let base = match &inv.artifacts.source {
        ArtifactSource::Mirror(url) => Base::Mirror(url),
        _ => Base::Upstream,
    };
    catalogue::needed(inv)
        .into_iter()
        .map(|a| {
            let (from, checksum) = match &bundle {
                Some(b) => {
                    let entry = b.entry(&a)?;
                    let checksum =
                        ListedChecksum { algorithm: Algorithm::Sha256, value: Some(entry.sha256.clone()), from: b.manifest_path().display().to_string() };
                    (b.path_of(entry).display().to_string(), checksum)
                }
                None => (a.url(base), ListedChecksum { algorithm: a.checksum_algorithm, value: None, from: a.checksum_url(base) }),
            };
            Ok(Listed {
                name: a.name(),
                version: a.version.to_string(),
                arch: a.arch.name(),
                packaging: a.packaging,
                provides: a.kind.provides(),
                scope: a.scope,
                hosts: a.hosts,
                from,
                checksum,
            })
        })
        .collect()
}
