//! Self-fencing: when a node cannot renew its lease, it freezes its
//! cluster runs before the lease can lapse, so that a run the scheduler
//! binds elsewhere once the node is declared lost is never running unfrozen
//! in two places.
//!
//! **The fence point.** etcd counts a lease's TTL from the moment it
//! handles a renewal, which is after the node sent it. So the node counts
//! from the *send* time of its last renewal etcd answered (on the monotonic
//! clock): the lease cannot lapse before `sent + TTL`. The node fences at
//! `sent + TTL * 2/3` ([`fence_point`]); the last third of the TTL is the
//! margin for the freeze itself (under a millisecond per run), the node's
//! own scheduling delays, and the difference between etcd's clock rate and
//! the node's. A renewal is sent every TTL/3, so fencing takes two
//! renewals in a row going unanswered.
//!
//! **Quorum loss.** etcd expires leases only on a leader, and a member
//! that becomes leader renews every lease it holds by a full TTL. While no
//! leader can exist nobody can expire the node's lease, so the node does
//! not fence then ([`quorum_lost`]). A leader needs a majority of the
//! members behind it. The node asks every member for its status: one that
//! answers and knows no leader is not behind one; one whose host refuses
//! the connection is down. Only the members it cannot tell about (no
//! route, no answer: they may be running, cut off from this node only)
//! could form a majority with a leader, so the node does not fence when
//! those are no majority and no member that answered knows a leader. This
//! widens the rule "a majority answers and none knows a leader" by the
//! members known to be down, which is what a quorum lost to dead members
//! looks like: two of three killed leave one member, which answers
//! without a leader, and two refused connections. It assumes that a
//! refused connection means a stopped member, not a firewall answering
//! for a running one (a partition made with REJECT and a TCP reset would
//! be taken for a dead member: make partitions with DROP or by link).
//! A probe sent at `t` that shows a lost quorum counts as a renewal sent at
//! `t`: a leader elected after it renews the lease by a full TTL from its
//! election. So the node asks again ahead of the next fence point, and
//! fences there if a leader is back and its own renewals still go
//! unanswered.
//!
//! **Lifting the fence.** A renewal of the same lease answered with TTL > 0
//! proves the lease never lapsed: nobody can have rebound the node's runs
//! (the scheduler acts only on nodes whose record, held by the lease, is
//! gone), so the frozen runs are thawed. A node whose lease lapsed takes a
//! new one and lists its bindings again before its new lease counts as
//! renewed; the main loop then kills, without thawing, every frozen run
//! whose binding is gone and thaws the others.
//!
//! The rule itself ([`Fence`]) is pure, on instants handed in; the task
//! that applies it ([`watch`]) probes the members and tells the main loop.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::NodeEvent;
use crate::cluster::etcd::{EndpointHealth, EndpointState};
use crate::config::ClusterConfig;

/// A renewal etcd answered: of which lease, sent when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub lease: i64,
    pub sent: Instant,
}

/// When a node whose last answered renewal was sent at `sent` fences.
pub fn fence_point(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl * 2 / 3
}

/// How often, as a fraction of the TTL, a node that does not fence only
/// because the quorum is lost checks again.
pub const RECHECK: u32 = 6;

/// Whether no leader can exist among the `configured` members, as `health`
/// shows them: no member that answered knows a leader, and the members
/// this node cannot tell about (unreachable, or missing from `health`) are
/// no majority.
pub fn quorum_lost(configured: usize, health: &[EndpointHealth]) -> bool {
    let with_leader = health
        .iter()
        .any(|h| matches!(h.state, EndpointState::Answered { leader, .. } if leader != 0));
    let told = health
        .iter()
        .filter(|h| !matches!(h.state, EndpointState::Unreachable { .. }))
        .count()
        .min(configured);
    let unknown = configured - told;
    !with_leader && configured > 0 && unknown <= configured / 2
}

/// How the cluster looks from the node, for `/readyz` and the logs:
/// `None` when it is available.
pub fn unavailable(configured: usize, health: &[EndpointHealth]) -> Option<String> {
    let answered = health.iter().filter(|h| h.answered()).count();
    let down = health.iter().filter(|h| matches!(h.state, EndpointState::Down { .. })).count();
    if answered == 0 {
        return Some(format!(
            "no etcd member answers (0 of {configured}; {down} refuse connections)"
        ));
    }
    let with_leader = health
        .iter()
        .any(|h| matches!(h.state, EndpointState::Answered { leader, .. } if leader != 0));
    if !with_leader {
        return Some(format!(
            "no quorum: {answered} of {configured} etcd members answer and none knows a leader"
        ));
    }
    None
}

/// The fence state of a node: pure, on instants handed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    ttl: Duration,
    /// The last renewal etcd answered; `None` before the first join.
    last: Option<Renewal>,
    /// Since when the node's cluster runs are frozen, if they are.
    fenced_since: Option<Instant>,
    /// When the node's task started: a node that has not joined yet counts
    /// from here (its live cluster runs, taken over after a restart, were
    /// renewed last by the agent before it, at an unknown time).
    started: Instant,
}

/// What the rule asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do until `until` (or a new renewal).
    Wait { until: Instant },
    /// The fence point passed: check the quorum, then fence.
    Due,
    /// Fenced: wait for a renewal.
    Fenced,
    /// A renewal came after the fence: lift it.
    Lift,
}

impl Fence {
    pub fn new(ttl: Duration, started: Instant) -> Fence {
        Fence { ttl, last: None, fenced_since: None, started }
    }

    /// The members showed, in answer to a probe sent at `sent`, that no
    /// leader can exist: nobody can expire the lease now, and a leader
    /// elected after the probe renews it by a full TTL from its election,
    /// which is later than `sent`. So the lease lives at least until
    /// `sent + TTL`, as after a renewal sent then.
    pub fn quorum_lost_at(&mut self, sent: Instant) {
        if let Some(last) = self.last {
            self.renewed(Renewal { lease: last.lease, sent });
        }
    }

    pub fn renewed(&mut self, renewal: Renewal) {
        if self.last.is_none_or(|l| l.sent <= renewal.sent || l.lease != renewal.lease) {
            self.last = Some(renewal);
        }
    }

    /// When the fence point is: `started` itself before the first join
    /// (a node that restarted cannot know how long ago its runs' lease was
    /// renewed).
    pub fn point(&self) -> Instant {
        self.last.map_or(self.started, |l| fence_point(l.sent, self.ttl))
    }

    pub fn verdict(&self, now: Instant) -> Verdict {
        let point = self.point();
        match self.fenced_since {
            None if now < point => Verdict::Wait { until: point },
            None => Verdict::Due,
            Some(_) if now < point => Verdict::Lift,
            Some(_) => Verdict::Fenced,
        }
    }

    pub fn fence(&mut self, now: Instant) {
        self.fenced_since.get_or_insert(now);
    }

    pub fn lift(&mut self) {
        self.fenced_since = None;
    }

    pub fn fenced_since(&self) -> Option<Instant> {
        self.fenced_since
    }

    /// How long to wait before checking again while the quorum is lost.
    pub fn recheck(&self) -> Duration {
        self.ttl / RECHECK
    }
}

/// Applies the fence rule to the renewals the node's sessions report:
/// tells the main loop to fence and to lift the fence. Ends when the main
/// loop is gone.
///
/// The members are asked for their status ahead of the fence point, within
/// TTL/[`RECHECK`] of it, so that the answer is there when the point comes
/// and the fence is not late by the probe's time.
pub async fn watch(
    config: ClusterConfig,
    mut renewals: watch::Receiver<Option<Renewal>>,
    events: mpsc::Sender<NodeEvent>,
) {
    let mut fence = Fence::new(config.lease_ttl, Instant::now());
    let configured = config.endpoints.len();
    let lead = fence.recheck();
    // The main loop was told the cluster is unavailable.
    let mut told = false;
    // The members' answers, when they were asked, and the fence point they
    // were asked for.
    let mut asked: Option<(Instant, Instant, Vec<EndpointHealth>)> = None;
    let mut seen: Option<Renewal> = None;
    loop {
        // A renewal since the last turn (the waits below mark the channel
        // seen, so it is told by its value).
        let latest = *renewals.borrow_and_update();
        let renewed = latest != seen;
        seen = latest;
        if let Some(r) = latest {
            fence.renewed(r);
        }
        let verdict = fence.verdict(Instant::now());
        if told && renewed && matches!(verdict, Verdict::Wait { .. } | Verdict::Lift) {
            // Renewals go through again: the cluster is available.
            told = false;
            if events.send(NodeEvent::Unavailable { problem: None }).await.is_err() {
                return;
            }
        }
        let event = match verdict {
            Verdict::Wait { until } => {
                let probe_at = until.checked_sub(lead).unwrap_or(until);
                let due = asked.as_ref().is_none_or(|(point, _, _)| *point != until);
                if due && Instant::now() >= probe_at {
                    let sent = Instant::now();
                    let health = probe(&config, until.saturating_duration_since(sent)).await;
                    asked = Some((until, sent, health));
                    continue;
                }
                let wake = if due { probe_at } else { until };
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    changed = renewals.changed() => if changed.is_err() { return },
                }
                continue;
            }
            Verdict::Fenced => {
                if renewals.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Verdict::Lift => {
                fence.lift();
                info!(node = %config.node_name, "cluster: the lease is renewed; lifting the fence");
                NodeEvent::Unfenced
            }
            Verdict::Due => {
                let point = fence.point();
                let (sent, health) = match asked.take() {
                    Some((asked_for, sent, health)) if asked_for == point => (sent, health),
                    // Not asked yet for this point (the agent just started):
                    // ask now.
                    _ => (Instant::now(), probe(&config, lead).await),
                };
                // A renewal may have come while probing.
                if renewals.has_changed().unwrap_or(false) {
                    continue;
                }
                if quorum_lost(configured, &health) {
                    let why = unavailable(configured, &health).unwrap_or_default();
                    info!(
                        node = %config.node_name,
                        "cluster: cannot renew the lease, but {why}: nobody can expire it, \
                         so the cluster runs keep running"
                    );
                    fence.quorum_lost_at(sent);
                    if !told {
                        told = true;
                        let send = events.send(NodeEvent::Unavailable { problem: Some(why) });
                        if send.await.is_err() {
                            return;
                        }
                    }
                    if fence.point() <= Instant::now() {
                        // Not joined yet: nothing to count from; ask again
                        // a little later.
                        tokio::select! {
                            () = tokio::time::sleep(fence.recheck()) => {}
                            changed = renewals.changed() => if changed.is_err() { return },
                        }
                    }
                    continue;
                }
                fence.fence(Instant::now());
                told = true;
                let problem = unavailable(configured, &health)
                    .unwrap_or_else(|| "this node cannot renew its lease".to_owned());
                warn!(
                    node = %config.node_name,
                    "cluster: no lease renewal for {:?} of a {:?} TTL ({problem}); freezing \
                     this node's cluster runs",
                    config.lease_ttl * 2 / 3,
                    config.lease_ttl
                );
                NodeEvent::Fenced { problem }
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// The members' status, within `budget`; none known when the probe itself
/// cannot be made (a TLS file gone: logged).
async fn probe(config: &ClusterConfig, budget: Duration) -> Vec<EndpointHealth> {
    match crate::cluster::etcd::probe_within(config, budget).await {
        Ok(health) => health,
        Err(e) => {
            warn!(node = %config.node_name, "cluster: cannot ask etcd's members: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: Duration = Duration::from_secs(3);

    fn answered(leader: u64) -> EndpointHealth {
        EndpointHealth {
            endpoint: "e".into(),
            state: EndpointState::Answered { member: 1, leader },
        }
    }

    fn down() -> EndpointHealth {
        EndpointHealth {
            endpoint: "e".into(),
            state: EndpointState::Down { error: "refused".into() },
        }
    }

    fn unreachable() -> EndpointHealth {
        EndpointHealth {
            endpoint: "e".into(),
            state: EndpointState::Unreachable { error: "no route".into() },
        }
    }

    #[test]
    fn the_fence_point_is_two_thirds_of_the_ttl_after_the_renewal_was_sent() {
        let t0 = Instant::now();
        assert_eq!(fence_point(t0, TTL), t0 + Duration::from_secs(2));
    }

    #[test]
    fn a_node_fences_at_the_point_and_lifts_on_a_later_renewal() {
        let t0 = Instant::now();
        let mut f = Fence::new(TTL, t0);
        assert_eq!(f.verdict(t0), Verdict::Due, "not joined yet: fenced at once");
        f.renewed(Renewal { lease: 7, sent: t0 });
        assert_eq!(f.verdict(t0 + Duration::from_secs(1)), Verdict::Wait { until: t0 + 2 * ONE });
        assert_eq!(f.verdict(t0 + 2 * ONE), Verdict::Due);
        f.fence(t0 + 2 * ONE);
        assert_eq!(f.verdict(t0 + 5 * ONE), Verdict::Fenced);
        f.renewed(Renewal { lease: 7, sent: t0 + 5 * ONE });
        assert_eq!(f.verdict(t0 + 5 * ONE), Verdict::Lift);
        f.lift();
        assert_eq!(f.verdict(t0 + 6 * ONE), Verdict::Wait { until: t0 + 7 * ONE });
    }

    const ONE: Duration = Duration::from_secs(1);

    #[test]
    fn a_lost_quorum_moves_the_fence_point_as_a_renewal_would() {
        let t0 = Instant::now();
        let mut f = Fence::new(TTL, t0);
        f.quorum_lost_at(t0);
        assert_eq!(f.verdict(t0), Verdict::Due, "not joined: nothing to count from");
        f.renewed(Renewal { lease: 7, sent: t0 });
        assert_eq!(f.verdict(t0 + 2 * ONE), Verdict::Due);
        f.quorum_lost_at(t0 + 2 * ONE);
        assert_eq!(f.verdict(t0 + 2 * ONE), Verdict::Wait { until: t0 + 4 * ONE });
        assert_eq!(f.verdict(t0 + 4 * ONE), Verdict::Due, "a leader back, no renewal: fence");
    }

    #[test]
    fn an_old_renewal_answered_late_lifts_nothing_past_its_point() {
        let t0 = Instant::now();
        let mut f = Fence::new(TTL, t0);
        f.renewed(Renewal { lease: 7, sent: t0 });
        f.fence(t0 + 2 * ONE);
        // An answer to a renewal sent before the fence point came after it:
        // the lease is alive until sent + TTL, but the point is passed.
        f.renewed(Renewal { lease: 7, sent: t0 + ONE / 2 });
        assert_eq!(f.verdict(t0 + 3 * ONE), Verdict::Fenced);
    }

    #[test]
    fn the_quorum_is_lost_only_when_no_leader_can_exist() {
        assert!(quorum_lost(3, &[answered(0), answered(0), unreachable()]));
        assert!(quorum_lost(3, &[answered(0), answered(0), answered(0)]));
        assert!(quorum_lost(3, &[answered(0), down(), down()]), "two of three killed");
        assert!(quorum_lost(3, &[down(), down(), down()]), "all of them down");
        assert!(
            quorum_lost(3, &[answered(0), down(), unreachable()]),
            "one unknown is no majority"
        );
        assert!(
            !quorum_lost(3, &[answered(0), unreachable(), unreachable()]),
            "two unknown may lead"
        );
        assert!(!quorum_lost(3, &[unreachable(), unreachable(), unreachable()]), "cut off");
        assert!(!quorum_lost(3, &[answered(0), answered(5), unreachable()]), "one has a leader");
        assert!(!quorum_lost(3, &[answered(0)]), "two not asked may lead");
        // Two of four are no majority (three are).
        assert!(quorum_lost(4, &[answered(0), answered(0), unreachable(), unreachable()]));
        assert!(!quorum_lost(4, &[answered(0), unreachable(), unreachable(), unreachable()]));
        assert!(quorum_lost(4, &[answered(0), answered(0), down(), unreachable()]));
        assert!(!quorum_lost(
            5,
            &[answered(0), answered(0), unreachable(), unreachable(), unreachable()]
        ));
    }

    proptest! {
        /// Whenever the rule says the quorum is lost, the members that could
        /// be running together (those not known to be down or leaderless)
        /// are fewer than a majority: no leader can exist among them.
        #[test]
        fn a_lost_quorum_leaves_no_possible_majority(
            states in proptest::collection::vec(0u8..4, 1..8),
        ) {
            let configured = states.len();
            let health: Vec<EndpointHealth> = states
                .iter()
                .map(|s| match s {
                    0 => answered(0),
                    1 => answered(3),
                    2 => down(),
                    _ => unreachable(),
                })
                .collect();
            if quorum_lost(configured, &health) {
                let possible = states.iter().filter(|&&s| s == 3 || s == 1).count();
                prop_assert!(possible <= configured / 2, "{states:?}");
                prop_assert!(!states.contains(&1));
            }
        }
    }

    #[test]
    fn unavailability_names_why() {
        let none = unavailable(3, &[unreachable(), unreachable(), unreachable()]).unwrap();
        assert!(none.contains("0 of 3"), "{none}");
        let no_quorum = unavailable(3, &[answered(0), unreachable(), unreachable()]).unwrap();
        assert!(no_quorum.contains("no quorum: 1 of 3"), "{no_quorum}");
        assert_eq!(unavailable(3, &[answered(2), unreachable(), unreachable()]), None);
    }

    proptest! {
        /// Whatever the renewals and the moments the rule is asked at, a
        /// node is never unfenced past a point where its lease could have
        /// lapsed: at any moment the verdict is not `Fenced`/`Due`, the
        /// last renewal was sent less than 2/3 TTL ago.
        #[test]
        fn never_unfenced_past_the_point(
            steps in proptest::collection::vec((0u64..3000, any::<bool>(), 0i64..3), 1..60)
        ) {
            let t0 = Instant::now();
            let mut f = Fence::new(TTL, t0);
            let mut now = t0;
            let mut newest_sent: Option<Instant> = None;
            for (advance_ms, renew, lease) in steps {
                now += Duration::from_millis(advance_ms);
                if renew {
                    // A renewal sent a little before now, answered now.
                    let sent = now - Duration::from_millis(advance_ms / 2);
                    f.renewed(Renewal { lease, sent });
                    newest_sent = Some(newest_sent.map_or(sent, |s: Instant| s.max(sent)));
                }
                match f.verdict(now) {
                    Verdict::Due => f.fence(now),
                    Verdict::Lift => f.lift(),
                    Verdict::Wait { .. } | Verdict::Fenced => {}
                }
                let unfenced = f.fenced_since().is_none();
                if unfenced {
                    let sent = f.last.map(|l| l.sent);
                    prop_assert!(sent.is_some(), "unfenced without ever renewing");
                    prop_assert!(now < fence_point(sent.unwrap(), TTL));
                    prop_assert!(sent <= newest_sent);
                }
            }
        }
    }
}
