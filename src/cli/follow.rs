//! `--wait`: follows one Promotion by watching it (no polling) and shows
//! its steps as they change: redrawn in place on a terminal, appended as
//! lines otherwise (logs, CI), so each change is recorded once.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;

use super::describe::awaited_target;
use super::error::CliError;
use crate::api::{Promotion, PromotionPhase};

/// Exit codes of `promote --wait` by how the Promotion ended (1 is barge's
/// own failure, 2 a usage error).
pub const EXIT_FAILED: u8 = 3;
pub const EXIT_ERRORED: u8 = 4;
pub const EXIT_ABORTED: u8 = 5;

/// The exit code for a Promotion that ended in `phase`.
pub fn exit_code(phase: PromotionPhase) -> u8 {
    match phase {
        PromotionPhase::Failed => EXIT_FAILED,
        PromotionPhase::Errored => EXIT_ERRORED,
        PromotionPhase::Aborted => EXIT_ABORTED,
        _ => 0,
    }
}

/// The lines showing where a Promotion is: its phase, then each planned
/// step with its status and what a running step waits on. No ages: the
/// lines change only when the Promotion does.
///
/// `freight_alias` names the Freight until the plan does (a Pending
/// Promotion has none), so the first lines do not show its long name.
pub fn progress_lines(p: &Promotion, freight_alias: Option<&str>) -> Vec<String> {
    let status = p.status.clone().unwrap_or_default();
    let freight = match (super::columns::promotion_freight(p), freight_alias) {
        (planned, Some(alias)) if planned == p.spec.freight && !alias.is_empty() => {
            alias.to_string()
        }
        (planned, _) => planned,
    };
    let mut lines = vec![format!(
        "Promotion {} of {freight} to {}: {}",
        p.name_any(),
        p.spec.stage,
        p.phase()
    )];
    // Why a Promotion is not running yet (its turn, a soak).
    if p.phase() == PromotionPhase::Pending && !status.message.is_empty() {
        lines.push(format!("  {}", status.message));
    }
    let steps = status
        .plan
        .as_ref()
        .map(|plan| plan.steps.clone())
        .unwrap_or_default();
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let alias = step.alias.clone().unwrap_or_default();
        let record = status.step_record(&alias);
        let state = record
            .and_then(|m| m.status)
            .map_or_else(|| "Pending".to_string(), |s| s.to_string());
        let mut line = format!(
            "  [{}/{total}] {alias} ({}): {state}",
            i + 1,
            step.uses.clone().unwrap_or_default()
        );
        let awaiting: Vec<_> = status
            .awaiting
            .iter()
            .filter(|a| a.alias == alias)
            .collect();
        // A waiting step's message is what it waits for, shown below it.
        if let Some(m) = record
            .filter(|m| !m.message.is_empty() && !awaiting.iter().any(|a| a.message == m.message))
        {
            line.push_str(&format!(" - {}", m.message));
        }
        lines.push(line);
        for a in awaiting {
            let since = a
                .since
                .as_ref()
                .map(|t| format!(" (since {})", t.0.strftime("%H:%M:%SZ")))
                .unwrap_or_default();
            let what = if a.message.is_empty() {
                String::new()
            } else {
                format!(": {}", a.message)
            };
            lines.push(format!(
                "        waiting on {}{what}{since}",
                awaited_target(a)
            ));
        }
    }
    if p.is_terminal() && !status.message.is_empty() {
        lines.push(format!("{}: {}", p.phase(), status.message));
    }
    lines
}

/// Where the lines go: a terminal redrawn in place, or an appended log.
struct Display<W: Write> {
    out: W,
    terminal: bool,
    shown: Vec<String>,
}

impl<W: Write> Display<W> {
    fn show(&mut self, lines: Vec<String>) -> std::io::Result<()> {
        if lines == self.shown {
            return Ok(());
        }
        if self.terminal {
            if !self.shown.is_empty() {
                // Up to the first line drawn, then clear to the end.
                write!(self.out, "\x1b[{}A\x1b[J", self.shown.len())?;
            }
            // Without line wrapping while drawing, each line takes one row
            // (a long one is cut at the edge), so the count above holds.
            write!(self.out, "\x1b[?7l")?;
            for line in &lines {
                writeln!(self.out, "{line}")?;
            }
            write!(self.out, "\x1b[?7h")?;
        } else {
            for line in lines.iter().filter(|l| !self.shown.contains(l)) {
                writeln!(self.out, "{line}")?;
            }
        }
        self.out.flush()?;
        self.shown = lines;
        Ok(())
    }
}

/// Watches the Promotion until it ends, showing its progress; the exit code
/// says how it ended.
pub async fn follow(
    api: &Api<Promotion>,
    name: &str,
    freight_alias: Option<&str>,
) -> Result<ExitCode, CliError> {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut display = Display {
        out: stdout.lock(),
        terminal,
        shown: Vec::new(),
    };
    let mut events = kube::runtime::watcher::watch_object(api.clone(), name)
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Some(p)) => {
                display.show(progress_lines(&p, freight_alias))?;
                if p.is_terminal() {
                    return Ok(ExitCode::from(exit_code(p.phase())));
                }
            }
            Ok(None) => return Err(CliError::refused(format!("Promotion {name} was deleted"))),
            // The watcher re-lists after a backoff; say so and go on.
            Err(e) => eprintln!("watching Promotion {name}: {e}; retrying"),
        }
    }
    Err(CliError::refused(format!(
        "the watch of Promotion {name} ended"
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn running() -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "dev.x.f1", "namespace": "demo"},
            "spec": {"stage": "dev", "freight": "f1"},
            "status": {
                "phase": "Running",
                "plan": {"steps": [{"as": "update", "uses": "argocd-update"}, {"as": "check", "uses": "http"}]},
                "stepExecutionMetadata": [{"alias": "update", "status": "Running", "message": "sync to finish"}],
                "awaiting": [{"alias": "update", "kind": "Application", "namespace": "argocd", "name": "app",
                              "message": "sync to finish", "since": "2026-01-01T10:00:00Z"}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn progress_shows_each_step_and_what_the_running_one_waits_on() {
        assert_eq!(
            progress_lines(&running(), None),
            vec![
                "Promotion dev.x.f1 of f1 to dev: Running",
                "  [1/2] update (argocd-update): Running",
                "        waiting on Application argocd/app: sync to finish (since 10:00:00Z)",
                "  [2/2] check (http): Pending",
            ]
        );
    }

    #[test]
    fn a_pending_promotion_says_why() {
        let p: Promotion = serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "p2"}, "spec": {"stage": "dev", "freight": "f2"},
            "status": {"phase": "Pending", "message": "waiting for p1 to finish"},
        }))
        .unwrap();
        assert_eq!(
            progress_lines(&p, Some("quiet-otter")),
            [
                "Promotion p2 of quiet-otter to dev: Pending",
                "  waiting for p1 to finish"
            ]
        );
    }

    #[test]
    fn without_a_terminal_only_changed_lines_are_appended() {
        let mut display = Display {
            out: Vec::new(),
            terminal: false,
            shown: Vec::new(),
        };
        display.show(vec!["a".into(), "b".into()]).unwrap();
        display.show(vec!["a".into(), "b".into()]).unwrap();
        display.show(vec!["a".into(), "c".into()]).unwrap();
        assert_eq!(String::from_utf8(display.out).unwrap(), "a\nb\nc\n");
    }

    #[test]
    fn on_a_terminal_the_previous_lines_are_redrawn_in_place() {
        let mut display = Display {
            out: Vec::new(),
            terminal: true,
            shown: Vec::new(),
        };
        display.show(vec!["a".into(), "b".into()]).unwrap();
        display.show(vec!["a".into(), "c".into()]).unwrap();
        assert_eq!(
            String::from_utf8(display.out).unwrap(),
            "\x1b[?7la\nb\n\x1b[?7h\x1b[2A\x1b[J\x1b[?7la\nc\n\x1b[?7h"
        );
    }

    #[test]
    fn each_ending_has_its_own_exit_code() {
        assert_eq!(exit_code(PromotionPhase::Succeeded), 0);
        let codes = [
            PromotionPhase::Failed,
            PromotionPhase::Errored,
            PromotionPhase::Aborted,
        ]
        .map(exit_code);
        assert_eq!(codes, [3, 4, 5]);
    }
}
