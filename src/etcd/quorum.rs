//! Raft majority arithmetic. Written once here so the topology check, the plan's gates and (later) the
//! live gates can never disagree about what "quorum" means.

/// Votes needed for a cluster of `voters` members to commit anything: floor(n/2)+1.
pub const fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// How many voting members may fail while the rest still form a quorum.
pub const fn tolerance(voters: usize) -> usize {
    voters.saturating_sub(quorum(voters))
}

/// Whether `lost` failed voters out of `voters` leave a quorum standing.
pub const fn survives(voters: usize, lost: usize) -> bool {
    voters >= lost && voters - lost >= quorum(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_etcd_table() {
        // members -> (quorum, tolerated failures), from etcd's FAQ.
        let table = [(1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2), (6, 4, 2), (7, 4, 3)];
        for (n, q, t) in table {
            assert_eq!((quorum(n), tolerance(n)), (q, t), "n={n}");
            assert!(survives(n, t) && !survives(n, t + 1));
        }
    }
}
