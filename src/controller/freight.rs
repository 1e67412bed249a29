//! The Freight reconciler: records the approvals the `barge.dev/approve`
//! annotation declares in `status.approvedFor` (the Stages' own watch of
//! Freight then sees it available).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};

use super::Error;
use crate::api::Freight;

pub struct FreightContext {
    pub client: Client,
    pub recorder: Recorder,
}

pub fn error_policy(_f: Arc<Freight>, error: &Error, _ctx: Arc<FreightContext>) -> Action {
    tracing::warn!(%error, "freight reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

pub async fn reconcile(freight: Arc<Freight>, ctx: Arc<FreightContext>) -> Result<Action, Error> {
    let stages = crate::approval::pending(&freight);
    if stages.is_empty() {
        return Ok(Action::await_change());
    }
    let namespace = freight.namespace().unwrap_or_default();
    crate::approval::approve(
        &ctx.client,
        &namespace,
        &freight.name_any(),
        &stages,
        Timestamp::now(),
    )
    .await?;
    let event = Event {
        type_: EventType::Normal,
        reason: "FreightApproved".into(),
        note: Some(format!("approved for {} by annotation", stages.join(", "))),
        action: "Approve".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &freight.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
    Ok(Action::await_change())
}
