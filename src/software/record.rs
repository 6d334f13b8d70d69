//! The record of one installed artifact on a host, and the probe lines that report it with the programs'
//! current checksums.
use crate::artifacts::catalogue::Kind;
use crate::inventory::Version;
use crate::paths::SOFTWARE_DIR;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub path: String,
    pub sha256: String,
}

/// What the software phase installed from one artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub version: Version,
    pub arch: String,
    /// The artifact's own checksum (verified against upstream's before anything was installed from it).
    pub sha256: String,
    pub programs: Vec<Program>,
}

impl Record {
    /// The file's text: `artifact <version> <arch> <sha256>`, then `program <sha256> <path>` per program.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "# kubeha's software phase installed these; the state probe compares the programs with them\nartifact {} {} {}\n",
            self.version, self.arch, self.sha256
        );
        for p in &self.programs {
            s.push_str(&format!("program {} {}\n", p.sha256, p.path));
        }
        s
    }
}

/// A record as the probe found it, with each program's checksum now (None: the file is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub record: Record,
    pub current: BTreeMap<String, Option<String>>,
}

impl Installed {
    /// The programs whose file is gone or differs from what was installed.
    pub fn changed(&self) -> impl Iterator<Item = &str> {
        self.record.programs.iter().filter(|p| self.current.get(&p.path).and_then(|c| c.as_deref()) != Some(p.sha256.as_str())).map(|p| p.path.as_str())
    }
}

/// The probe's part: per record, `software <kind> artifact <version> <arch> <sha256>` and per program
/// `software <kind> program <recorded> <current or missing> <path>`. Records and paths are kubeha's own
/// (root-only folder, no spaces); the programs are hashed by redirection.
pub fn probe_script() -> String {
    format!(
        "for r in {SOFTWARE_DIR}/*.installed; do\n  [ -f \"$r\" ] || continue\n  k=$(basename \"$r\" .installed)\n  \
         while read -r word a b c; do\n    case \"$word\" in\n      \
         artifact) printf 'software %s artifact %s %s %s\\n' \"$k\" \"$a\" \"$b\" \"$c\" ;;\n      \
         program) if [ -f \"$b\" ]; then now=$(sha256sum < \"$b\" | cut -c1-64); else now=missing; fi\n        \
         printf 'software %s program %s %s %s\\n' \"$k\" \"$a\" \"$now\" \"$b\" ;;\n    esac\n  done < \"$r\"\ndone\n"
    )
}

fn hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Folds one `software ...` line (without the leading word) into `found`; None when it is malformed (the
/// caller reports the line). A program line before its artifact line is malformed too.
pub fn parse_line(rest: &str, found: &mut BTreeMap<Kind, Installed>) -> Option<()> {
    let words: Vec<&str> = rest.split(' ').collect();
    let first = *words.first()?;
    let kind = Kind::ALL.into_iter().find(|k| k.name() == first)?;
    match words.as_slice() {
        [_, "artifact", version, arch, sha] if hex64(sha) => {
            let version = Version::parse(version)?;
            let record = Record { kind, version, arch: (*arch).into(), sha256: (*sha).into(), programs: Vec::new() };
            found.insert(kind, Installed { record, current: BTreeMap::new() });
        }
        [_, "program", recorded, now, path] if hex64(recorded) && path.starts_with('/') && (hex64(now) || *now == "missing") => {
            let installed = found.get_mut(&kind)?;
            installed.record.programs.push(Program { path: (*path).into(), sha256: (*recorded).into() });
            installed.current.insert((*path).into(), (*now != "missing").then(|| (*now).to_string()));
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's shell and the record's text must agree: the script run on a record the phase wrote gives
    /// back that record, with the programs' checksums as they are now.
    #[test]
    fn the_probe_reads_back_what_the_phase_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (etcd, etcdctl) = (dir.path().join("etcd"), dir.path().join("etcdctl"));
        std::fs::write(&etcd, b"etcd program").unwrap();
        std::fs::write(&etcdctl, b"changed since").unwrap();
        let record = Record {
            kind: Kind::Etcd,
            version: Version::new(3, 6, 16),
            arch: "amd64".into(),
            sha256: "c".repeat(64),
            programs: vec![
                Program { path: etcd.display().to_string(), sha256: crate::digest::sha256_hex(b"etcd program") },
                Program { path: etcdctl.display().to_string(), sha256: "d".repeat(64) },
                Program { path: dir.path().join("etcdutl").display().to_string(), sha256: "e".repeat(64) },
            ],
        };
        let records = dir.path().join("records");
        std::fs::create_dir(&records).unwrap();
        std::fs::write(records.join("etcd.installed"), record.to_text()).unwrap();
        let script = probe_script().replace(SOFTWARE_DIR, &records.display().to_string());
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        let mut found = BTreeMap::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            parse_line(line.strip_prefix("software ").unwrap(), &mut found).unwrap_or_else(|| panic!("{line}"));
        }
        let installed = &found[&Kind::Etcd];
        assert_eq!(installed.record, record);
        let changed: Vec<&str> = installed.changed().collect();
        assert_eq!(changed, [record.programs[1].path.as_str(), record.programs[2].path.as_str()]);
        assert_eq!(installed.current[&record.programs[2].path], None);
    }

    #[test]
    fn malformed_lines_are_refused() {
        let mut found = BTreeMap::new();
        let sha = "a".repeat(64);
        for bad in [
            format!("etcd program {sha} {sha} /usr/local/bin/etcd"), // before its artifact line
            format!("nginx artifact 1.2.3 amd64 {sha}"),
            "etcd artifact 3.6 amd64 abc".to_string(),
            format!("etcd artifact 3.6.16 amd64 {sha} extra"),
        ] {
            assert!(parse_line(&bad, &mut found).is_none(), "{bad}");
        }
        parse_line(&format!("etcd artifact 3.6.16 amd64 {sha}"), &mut found).unwrap();
        assert!(parse_line(&format!("etcd program {sha} bogus /x"), &mut found).is_none());
        parse_line(&format!("etcd program {sha} missing /x"), &mut found).unwrap();
        assert_eq!(found[&Kind::Etcd].changed().collect::<Vec<_>>(), ["/x"]);
    }
}
