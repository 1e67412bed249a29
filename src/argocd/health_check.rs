//! The health check `argocd-update` leaves in a succeeded Promotion's
//! status, and the Stage reads back to judge its health: the contract
//! between the two, as one type.

use serde::{Deserialize, Serialize};

/// `status.healthChecks[].config` of an `argocd-update` step.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct HealthCheckRecord {
    pub apps: Vec<AppHealthCheck>,
}

/// One Application the step synced, and the revision(s) it must run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppHealthCheck {
    pub name: String,
    pub namespace: String,
    /// One entry per source of the Application; "" where the step set none.
    #[serde(default)]
    pub desired_revisions: Vec<String>,
}
