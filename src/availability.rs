//! Whether a Freight may be promoted to a Stage, and if not yet, from which
//! instant: Kargo's rules for `requestedFreight[].sources`. Approved
//! Freight and Freight of a `direct` origin always may; otherwise it must be
//! verified in one (`OneOf`, the default) or every (`All`) upstream Stage,
//! and, with `requiredSoakTime`, have been used there continuously for that
//! long. A Freight still in the upstream Stage soaks as time passes, so the
//! answer can be "at this instant", which the Stage controller turns into a
//! timer instead of polling.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::api::stage::AvailabilityStrategy;
use crate::api::{Freight, FreightRequest, Stage};

/// When a Freight is available to a Stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Now,
    /// Once it has soaked long enough upstream, at this instant.
    At(Timestamp),
    /// Not while nothing changes (it is not verified upstream, or left the
    /// upstream Stage before soaking long enough).
    No,
}

impl Availability {
    fn earliest(self, other: Self) -> Self {
        use Availability::*;
        match (self, other) {
            (Now, _) | (_, Now) => Now,
            (At(a), At(b)) => At(a.min(b)),
            (At(a), No) | (No, At(a)) => At(a),
            (No, No) => No,
        }
    }

    fn latest(self, other: Self) -> Self {
        use Availability::*;
        match (self, other) {
            (No, _) | (_, No) => No,
            (At(a), At(b)) => At(a.max(b)),
            (At(a), Now) | (Now, At(a)) => At(a),
            (Now, Now) => Now,
        }
    }
}

/// When `freight` is available to `stage`, judged at `now`.
pub fn availability(stage: &Stage, freight: &Freight, now: Timestamp) -> Availability {
    let name = stage.name_any();
    let status = freight.status.clone().unwrap_or_default();
    if status.approved_for.contains_key(&name) {
        return Availability::Now;
    }
    stage
        .spec
        .requested_freight
        .iter()
        .filter(|r| {
            r.origin.kind == freight.spec.origin.kind && r.origin.name == freight.spec.origin.name
        })
        .map(|request| through(request, freight, now))
        .fold(Availability::No, Availability::earliest)
}

/// Availability through one request: directly, or from its upstream Stages.
fn through(request: &FreightRequest, freight: &Freight, now: Timestamp) -> Availability {
    let sources = &request.sources;
    if sources.direct {
        return Availability::Now;
    }
    let mut upstream = sources
        .stages
        .iter()
        .map(|up| soaked_in(freight, up, sources.required_soak_time, now));
    match sources.availability_strategy.unwrap_or_default() {
        AvailabilityStrategy::OneOf => upstream.fold(Availability::No, Availability::earliest),
        AvailabilityStrategy::All => match upstream.next() {
            Some(first) => upstream.fold(first, Availability::latest),
            None => Availability::No,
        },
    }
}

/// When the Freight has been verified in `stage` and used there for
/// `required`: its longest completed stay, or its current one.
fn soaked_in(
    freight: &Freight,
    stage: &str,
    required: Option<kube::core::Duration>,
    now: Timestamp,
) -> Availability {
    let status = freight.status.clone().unwrap_or_default();
    let Some(verified) = status.verified_in.get(stage) else {
        return Availability::No;
    };
    let Some(required) = required.and_then(signed) else {
        return Availability::Now;
    };
    let longest = verified
        .longest_soak
        .and_then(signed)
        .unwrap_or(SignedDuration::ZERO);
    if longest >= required {
        return Availability::Now;
    }
    let since = status
        .currently_in
        .get(stage)
        .and_then(|c| c.since.as_ref())
        .map(|t| t.0);
    match since.and_then(|since| since.checked_add(required).ok()) {
        Some(ready) if ready <= now => Availability::Now,
        Some(ready) => Availability::At(ready),
        None => Availability::No,
    }
}

fn signed(d: kube::core::Duration) -> Option<SignedDuration> {
    if d.is_negative() {
        return None;
    }
    SignedDuration::try_from(std::time::Duration::from(d)).ok()
}

/// How long a stay from `since` to `now` lasted, in whole seconds, for
/// `longestSoak` when the Freight leaves a Stage: written as Go writes a
/// `metav1.Duration` (`1h30m0s`).
pub fn stay(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(since).as_secs().max(0);
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn stage(sources: Value) -> Stage {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": "prod", "namespace": "demo"},
            "spec": {"requestedFreight": [{"origin": {"kind": "Warehouse", "name": "w"}, "sources": sources}]},
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    fn freight(status: Value) -> Freight {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": "f1", "namespace": "demo"},
            "origin": {"kind": "Warehouse", "name": "w"},
            "status": status,
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    fn since(second: i64) -> Value {
        json!({"since": at(second).to_string()})
    }

    #[test]
    fn freight_in_an_upstream_stage_becomes_available_when_it_has_soaked_there() {
        let prod = stage(json!({"stages": ["staging"], "requiredSoakTime": "1h"}));
        let f =
            freight(json!({"verifiedIn": {"staging": {}}, "currentlyIn": {"staging": since(0)}}));

        assert_eq!(availability(&prod, &f, at(60)), Availability::At(at(3600)));
        assert_eq!(availability(&prod, &f, at(3600)), Availability::Now);
    }

    #[test]
    fn a_long_enough_completed_stay_counts_after_the_freight_left() {
        let prod = stage(json!({"stages": ["staging"], "requiredSoakTime": "1h"}));
        let long = freight(json!({"verifiedIn": {"staging": {"longestSoak": "2h0m0s"}}}));
        let short = freight(json!({"verifiedIn": {"staging": {"longestSoak": "10m0s"}}}));

        assert_eq!(availability(&prod, &long, at(0)), Availability::Now);
        assert_eq!(availability(&prod, &short, at(0)), Availability::No);
    }

    #[test]
    fn unverified_freight_is_unavailable_and_approval_or_direct_make_it_available() {
        let prod = stage(json!({"stages": ["staging"]}));
        let unverified = freight(json!({"currentlyIn": {"staging": since(0)}}));
        let approved = freight(json!({"approvedFor": {"prod": {}}}));

        assert_eq!(availability(&prod, &unverified, at(0)), Availability::No);
        assert_eq!(availability(&prod, &approved, at(0)), Availability::Now);
        assert_eq!(
            availability(&stage(json!({"direct": true})), &unverified, at(0)),
            Availability::Now
        );
    }

    #[test]
    fn one_of_takes_the_first_upstream_ready_and_all_waits_for_the_last() {
        let status = json!({
            "verifiedIn": {"a": {}, "b": {}},
            "currentlyIn": {"a": since(0), "b": since(600)},
        });
        let f = freight(status);
        let one_of = stage(json!({"stages": ["a", "b"], "requiredSoakTime": "1h"}));
        let all = stage(
            json!({"stages": ["a", "b"], "requiredSoakTime": "1h", "availabilityStrategy": "All"}),
        );
        let all_unverified = stage(json!({"stages": ["a", "c"], "availabilityStrategy": "All"}));

        assert_eq!(
            availability(&one_of, &f, at(60)),
            Availability::At(at(3600))
        );
        assert_eq!(availability(&all, &f, at(60)), Availability::At(at(4200)));
        assert_eq!(availability(&all_unverified, &f, at(60)), Availability::No);
    }

    #[test]
    fn a_stay_is_recorded_as_a_go_duration() {
        assert_eq!(stay(at(0), at(5400)), "1h30m0s");
        assert_eq!(stay(at(0), at(600)), "10m0s");
        assert_eq!(stay(at(10), at(0)), "0s");
    }
}
