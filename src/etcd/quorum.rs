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

/// How many more of the `healthy` voters (out of `voters` configured) may fail before quorum is lost:
/// negative when it is already lost (by that many votes). Unlike `tolerance`, this counts the members
/// that are down right now, which is what an operator on call needs.
pub const fn margin(voters: usize, healthy: usize) -> i64 {
    healthy as i64 - quorum(voters) as i64
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

    #[test]
    fn margin_agrees_with_tolerance_and_survives() {
        assert_eq!((margin(3, 3), margin(3, 2), margin(3, 1), margin(5, 3), margin(5, 2)), (1, 0, -1, 0, -1));
        for n in 1..=9 {
            assert_eq!(margin(n, n), tolerance(n) as i64, "n={n}");
            for lost in 0..=n {
                assert_eq!(margin(n, n - lost) >= 0, survives(n, lost), "n={n} lost={lost}");
            }
        }
    }
}
