//! Fault points: places where the chaos harness (`make chaos`) can make the
//! controller die by SIGKILL at an exact moment, such as between the Argo CD
//! write and the status write that records it. Only a build with the
//! `fault-hooks` feature has them; in any other build [`point`] is empty.
//!
//! A point fires once per arming: the harness arms `<name>` by creating the
//! file `$BARGE_FAULT_DIR/<name>`; the first process to reach the point
//! claims the file (an atomic rename, so two replicas cannot both take it)
//! and kills itself.

/// Between a successful sync request (the Application's `operation` is
/// written) and the Promotion status write that would record it.
pub const AFTER_SYNC_REQUEST: &str = "after-sync-request";

#[cfg(feature = "fault-hooks")]
pub fn point(name: &str) {
    let Some(dir) = std::env::var_os("BARGE_FAULT_DIR") else {
        return;
    };
    let armed = std::path::Path::new(&dir).join(name);
    let claimed = armed.with_extension(format!("fired-{}", std::process::id()));
    if std::fs::rename(&armed, &claimed).is_err() {
        return;
    }
    tracing::warn!(point = name, "fault point armed: killing this process");
    let pid = std::process::id().to_string();
    // SIGKILL, as the harness would send it: no destructor, no flush, no
    // graceful shutdown. `abort` only if `kill` cannot be run.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    std::process::abort();
}

#[cfg(not(feature = "fault-hooks"))]
#[inline(always)]
pub fn point(_name: &str) {}
