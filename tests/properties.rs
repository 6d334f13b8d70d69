//! Properties that must hold for any input, not just the examples.
use kubeha::inventory::{self, PathContext};
use kubeha::plan::{self, Action, GateWhen};
use proptest::prelude::*;

fn paths() -> PathContext {
    PathContext { inventory_dir: ".".into(), home: None }
}

fn inventory_yaml(control_planes: usize, workers: usize, zones: usize) -> String {
    let mut y = String::from(
        "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: p}\nspec:\n  kubernetes: {version: 1.36.4}\n  etcd: {version: 3.6.14}\n  controlPlane:\n    loadBalancer: {mode: keepalived-haproxy, vip: 198.18.0.250/24}\n  hosts:\n",
    );
    for i in 0..control_planes {
        y.push_str(&format!("  - {{name: cp-{i}, address: 198.18.0.{}, roles: [control-plane], zone: z{}}}\n", i + 1, i % zones));
    }
    for i in 0..workers {
        y.push_str(&format!("  - {{name: wk-{i}, address: 198.18.1.{}, roles: [worker], zone: z{}}}\n", i + 1, i % zones));
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every etcd membership change sits between a gate before it (all current voters) and a gate after
    /// it (the voters including the new member); there is never more than one learner; ids are unique.
    #[test]
    fn every_membership_change_is_gated(control_planes in 1usize..8, workers in 0usize..6, zones in 1usize..4) {
        let loaded = inventory::parse("p.yaml".into(), inventory_yaml(control_planes, workers, zones), &paths());
        let inv = loaded.inventory.expect("generated inventories are valid");
        let plan = plan::offline(&inv).unwrap();
        let steps: Vec<_> = plan.steps().collect();
        let mut ids = std::collections::HashSet::new();
        prop_assert!(steps.iter().all(|s| ids.insert(s.id.clone())), "duplicate step id");

        let mut voters: Vec<String> = Vec::new();
        let mut learner: Option<String> = None;
        let mut last_gate: Option<(GateWhen, Vec<String>)> = None;
        for s in &steps {
            match &s.action {
                Action::Gate(g) => {
                    prop_assert_eq!(g.quorum, g.voters.len() / 2 + 1);
                    prop_assert_eq!(g.max_learners, 0);
                    if g.when == GateWhen::After {
                        prop_assert!(learner.is_none(), "after-gate with a learner still in flux");
                        prop_assert_eq!(&g.voters, &voters);
                    } else {
                        prop_assert_eq!(&g.voters, &voters);
                    }
                    last_gate = Some((g.when, g.voters.clone()));
                }
                Action::AddEtcdLearner { member, .. } => {
                    prop_assert!(learner.is_none(), "two members in flux");
                    prop_assert_eq!(last_gate.as_ref().map(|g| g.0), Some(GateWhen::Before), "add without a gate before it");
                    learner = Some(member.clone());
                }
                Action::PromoteEtcdLearner { member } => {
                    let promoted = learner.take();
                    prop_assert_eq!(promoted.as_ref(), Some(member));
                    voters.push(member.clone());
                }
                Action::StartEtcdMember { member, initial_cluster_state: plan::EtcdCluster::New, .. } => {
                    prop_assert!(voters.is_empty());
                    voters.push(member.clone());
                }
                _ => {}
            }
        }
        prop_assert_eq!(voters.len(), control_planes);
        prop_assert_eq!(plan.steps().filter(|s| matches!(s.action, Action::KubeadmJoinWorker { .. })).count(), workers);
    }

    /// Any string survives the templates' YAML quoting: it parses back to itself, so no inventory value
    /// can break a rendered YAML file or add keys to it.
    #[test]
    fn json_quoting_round_trips_through_yaml(value in any::<String>()) {
        let mut tera = tera::Tera::default();
        tera.register_filter("json_encode", tera_contrib::json::json_encode);
        tera.add_raw_template("t", "key: {{ v | json_encode }}\nother: fixed\n").unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("v", &value);
        let text = tera.render("t", &ctx).unwrap();
        let parsed: std::collections::BTreeMap<String, String> = serde_saphyr::from_str(&text).unwrap();
        prop_assert_eq!(parsed.get("key"), Some(&value));
        prop_assert_eq!(parsed.len(), 2);
    }

    /// Cutting, duplicating or splicing bytes of a valid inventory never panics: it yields a model or findings.
    #[test]
    fn mutated_inventories_never_panic(cut in 0usize..2000, len in 0usize..40, insert in "[ -~\n\t:{}\\[\\]&*!|>-]{0,12}") {
        let base = std::fs::read_to_string("inventories/prod-3az.yaml").unwrap();
        let mut chars: Vec<char> = base.chars().collect();
        let at = cut.min(chars.len());
        let end = (at + len).min(chars.len());
        chars.splice(at..end, insert.chars());
        let text: String = chars.into_iter().collect();
        let loaded = inventory::parse("m.yaml".into(), text, &paths());
        prop_assert!(loaded.inventory.is_some() || loaded.diagnostics.iter().any(|d| d.is_error()));
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let loaded = inventory::parse("a.yaml".into(), text, &paths());
        prop_assert!(loaded.inventory.is_none());
    }
}
