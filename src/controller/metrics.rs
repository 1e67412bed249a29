//! Prometheus metrics, without object names as labels.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

pub struct Metrics {
    pub registry: Registry,
    reconcile_duration: Family<ControllerLabels, Histogram>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    promotions_finished: Family<PhaseLabels, Counter>,
    application_events: Counter,
    promotions_woken: Counter,
    watch_errors: Family<WatchLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("barge");
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            });
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let promotions_finished = Family::<PhaseLabels, Counter>::default();
        let application_events = Counter::default();
        let promotions_woken = Counter::default();
        let watch_errors = Family::<WatchLabels, Counter>::default();
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that returned an error",
            reconcile_errors.clone(),
        );
        registry.register(
            "promotions_finished",
            "Promotions that reached a terminal phase",
            promotions_finished.clone(),
        );
        registry.register(
            "application_events",
            "Application changes seen by the watch",
            application_events.clone(),
        );
        registry.register(
            "promotions_woken",
            "Promotion reconciles requested by an Application change",
            promotions_woken.clone(),
        );
        registry.register("watch_errors", "Errors of a watch", watch_errors.clone());
        Self {
            registry,
            reconcile_duration,
            reconcile_errors,
            promotions_finished,
            application_events,
            promotions_woken,
            watch_errors,
        }
    }
}

impl Metrics {
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

    pub fn application_event(&self, woken: usize) {
        self.application_events.inc();
        self.promotions_woken.inc_by(woken as u64);
    }

    pub fn watch_error(&self, resource: &str) {
        self.watch_errors
            .get_or_create(&WatchLabels {
                resource: resource.into(),
            })
            .inc();
    }
}
