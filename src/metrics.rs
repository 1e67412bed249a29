//! Prometheus metrics (no object names as labels) and the watch health that
//! `/healthz` reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::PromotionPhase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub kind: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub sender: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: String,
    pub resource: String,
}

type PromotionKey = (String, String);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

pub struct Metrics {
    pub registry: Registry,
    reconcile_duration: Family<ControllerLabels, Histogram>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    promotions_finished: Family<PhaseLabels, Counter>,
    promotions: Family<PhaseLabels, Gauge>,
    step_duration: Family<StepLabels, Histogram>,
    wakeup_latency: Histogram,
    queue_depth: Gauge,
    application_events: Counter,
    promotions_woken: Counter,
    watch_errors: Family<WatchLabels, Counter>,
    webhook_deliveries: Family<DeliveryLabels, Counter>,
    webhook_wakes: Counter,
    warehouse_discoveries: Family<OutcomeLabels, Counter>,
    warehouse_discovery_duration: Histogram,
    freight_created: Counter,
    api_requests: Family<ApiRequestLabels, Counter>,
    /// Promotion → phase, so the per-phase gauge moves by deltas.
    phases: Mutex<HashMap<PromotionKey, PromotionPhase>>,
    /// Promotion → when an Application change asked for its reconcile.
    pending_wakes: Mutex<HashMap<PromotionKey, Instant>>,
    /// Unix seconds since when watches have failed without a success; 0 = fine.
    watch_failing_since: AtomicI64,
    /// Caches synced (or standing by for the lease).
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("barge");
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 20));
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(seconds);
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(seconds);
        let wakeup_latency = seconds();
        let m = Self {
            registry: Registry::default(),
            reconcile_duration,
            reconcile_errors: Family::default(),
            promotions_finished: Family::default(),
            promotions: Family::default(),
            step_duration,
            wakeup_latency,
            queue_depth: Gauge::default(),
            application_events: Counter::default(),
            promotions_woken: Counter::default(),
            watch_errors: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_wakes: Counter::default(),
            warehouse_discoveries: Family::default(),
            warehouse_discovery_duration: seconds(),
            freight_created: Counter::default(),
            api_requests: Family::default(),
            phases: Mutex::default(),
            pending_wakes: Mutex::default(),
            watch_failing_since: AtomicI64::new(0),
            ready: AtomicBool::new(false),
        };
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that returned an error",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "promotions_finished",
            "Promotions that reached a terminal phase",
            m.promotions_finished.clone(),
        );
        registry.register("promotions", "Promotions by phase", m.promotions.clone());
        registry.register(
            "step_duration_seconds",
            "Time from a step's start to its end, by step kind",
            m.step_duration.clone(),
        );
        registry.register(
            "wakeup_latency_seconds",
            "Time from an Application change to the start of the reconcile of a Promotion waiting on it",
            m.wakeup_latency.clone(),
        );
        registry.register(
            "reconcile_queue_depth",
            "Promotion reconciles requested by events and not started yet",
            m.queue_depth.clone(),
        );
        registry.register(
            "application_events",
            "Application changes seen by the watch",
            m.application_events.clone(),
        );
        registry.register(
            "promotions_woken",
            "Promotion reconciles requested by an Application change",
            m.promotions_woken.clone(),
        );
        registry.register("watch_errors", "Errors of a watch", m.watch_errors.clone());
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by sender and outcome (woke, ignored, unauthorized, malformed, not_found, failed)",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_wakes",
            "Promotion and Warehouse reconciles requested by a webhook delivery",
            m.webhook_wakes.clone(),
        );
        registry.register(
            "warehouse_discoveries",
            "Warehouse discoveries by outcome (success, or the first failure's reason)",
            m.warehouse_discoveries.clone(),
        );
        registry.register(
            "warehouse_discovery_duration_seconds",
            "Time one Warehouse discovery took, all its subscriptions together",
            m.warehouse_discovery_duration.clone(),
        );
        registry.register(
            "freight_created",
            "Freight created by Warehouses",
            m.freight_created.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb and resource (watches included: one per watch opened)",
            m.api_requests.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn warehouse_discovery(&self, took: Duration, outcome: &str) {
        self.warehouse_discovery_duration
            .observe(took.as_secs_f64());
        self.warehouse_discoveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// One request to the API server is on its way.
    pub fn api_request(&self, verb: &str, resource: &str) {
        self.api_requests
            .get_or_create(&ApiRequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .inc();
    }

    pub fn freight_created(&self) {
        self.freight_created.inc();
    }

    pub fn reconciled(&self, controller: &str, took: Duration, failed: bool) {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
    }

    pub fn promotion_finished(&self, phase: PromotionPhase) {
        self.promotions_finished
            .get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            })
            .inc();
    }

    /// Tracks a Promotion's phase as seen by the watch; `None` when deleted.
    pub fn promotion_phase(&self, key: PromotionKey, phase: Option<PromotionPhase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let old = match phase {
            Some(p) => phases.insert(key, p),
            None => phases.remove(&key),
        };
        if old == phase {
            return;
        }
        if let Some(old) = old {
            self.promotions
                .get_or_create(&PhaseLabels {
                    phase: old.to_string(),
                })
                .dec();
        }
        if let Some(new) = phase {
            self.promotions
                .get_or_create(&PhaseLabels {
                    phase: new.to_string(),
                })
                .inc();
        }
    }

    pub fn step_finished(&self, kind: &str, status: &str, took: Duration) {
        let labels = StepLabels {
            kind: kind.into(),
            status: status.into(),
        };
        self.step_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// An Application change asked for these Promotions' reconciles.
    pub fn application_event(&self, woken: &[PromotionKey]) {
        self.application_events.inc();
        self.promotions_woken.inc_by(woken.len() as u64);
        if let Ok(mut pending) = self.pending_wakes.lock() {
            let now = Instant::now();
            for key in woken {
                pending.entry(key.clone()).or_insert(now);
            }
            self.queue_depth.set(pending.len() as i64);
        }
    }

    /// A webhook delivery was answered.
    pub fn webhook_delivery(&self, sender: &str, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels {
                sender: sender.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A webhook delivery asked for these Promotions' reconciles: the time
    /// to each one's reconcile counts as a wake-up's.
    pub fn webhook_woke(&self, woken: &[PromotionKey]) {
        self.webhook_wakes.inc_by(woken.len() as u64);
        if let Ok(mut pending) = self.pending_wakes.lock() {
            let now = Instant::now();
            for key in woken {
                pending.entry(key.clone()).or_insert(now);
            }
            self.queue_depth.set(pending.len() as i64);
        }
    }

    /// A webhook delivery asked for `count` Warehouses' discoveries.
    pub fn webhook_refreshed(&self, count: usize) {
        self.webhook_wakes.inc_by(count as u64);
    }

    /// A Promotion's reconcile starts: the wake-up it answers, if any, is measured.
    pub fn reconcile_started(&self, key: &PromotionKey) {
        if let Ok(mut pending) = self.pending_wakes.lock()
            && let Some(since) = pending.remove(key)
        {
            self.wakeup_latency.observe(since.elapsed().as_secs_f64());
            self.queue_depth.set(pending.len() as i64);
        }
    }

    pub fn watch_error(&self, resource: &str) {
        self.watch_errors
            .get_or_create(&WatchLabels {
                resource: resource.into(),
            })
            .inc();
        let now = jiff::Timestamp::now().as_second();
        let _ =
            self.watch_failing_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn watch_ok(&self) {
        self.watch_failing_since.store(0, Ordering::Relaxed);
    }

    /// How long watches have been failing without a success.
    pub fn watch_failing_for(&self) -> Option<Duration> {
        let since = self.watch_failing_since.load(Ordering::Relaxed);
        (since != 0).then(|| {
            Duration::from_secs((jiff::Timestamp::now().as_second() - since).max(0) as u64)
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
