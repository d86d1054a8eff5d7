//! The `INFO lock` section (`# lock_stats`).

use redis_module::{InfoContext, RedisResult};

use super::deadlines::watched_count;
use super::state::with_table;

pub fn add_info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    // In a crash report the table may be mid-change; with_table refuses a nested borrow.
    let Ok((st, waiters, locks_with_waiters, tracked, sessions)) = with_table(|t| {
        (
            t.stats.clone(),
            t.waiters().total(),
            t.waiters().locks_waited_on(),
            t.tracked_holds(),
            t.session_count(),
        )
    }) else {
        return Ok(());
    };
    ctx.builder()
        .add_section("stats")
        .field("waiters", waiters as u64)?
        .field("locks_with_waiters", locks_with_waiters as u64)?
        .field("grants_immediate", st.grants_immediate)?
        .field("grants_after_wait", st.grants_after_wait)?
        .field("handoffs_release", st.handoffs_release)?
        .field("handoffs_expiry", st.handoffs_expiry)?
        .field("handoffs_foreign_delete", st.handoffs_deletion)?
        .field("handoffs_reset", st.handoffs_reset)?
        .field("handoffs_disconnect", st.handoffs_disconnect)?
        .field("timeouts", st.timeouts)?
        .field("disconnected_waiters", st.disconnected_waiters)?
        .field("errors", st.errors)?
        .field("wait_count", st.wait.count)?
        .field("wait_ms_total", st.wait.total_ms)?
        .field("wait_ms_avg", format!("{:.2}", st.wait.mean_ms()))?
        .field("wait_ms_max", st.wait.max_ms)?
        .field("hold_count", st.hold.count)?
        .field("hold_ms_total", st.hold.total_ms)?
        .field("hold_ms_avg", format!("{:.2}", st.hold.mean_ms()))?
        .field("hold_ms_max", st.hold.max_ms)?
        .field("locks_tracked", tracked as u64)?
        .field(
            "foreign_locks_without_signal",
            super::events::foreign_locks_without_signal(),
        )?
        .field("deadline_timers", watched_count() as u64)?
        .field("session_locks", sessions as u64)?
        .field("session_frees", st.session_frees)?
        .field("session_renewals", st.session_renewals)?
        .build_section()?
        .build_info()?;
    Ok(())
}
