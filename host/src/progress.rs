//! Progress bars for long loops, drawn only when stderr is a terminal (logs and CI output
//! stay clean). Every bar joins one [`MultiProgress`], so a bar made while another is drawn
//! is a line below it (the run's cells, then the current cell's samples) instead of both
//! fighting over one line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);
static LINES: OnceLock<MultiProgress> = OnceLock::new();

/// Hides every bar from now on (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A bar of `len` steps labelled `message`; hidden when stderr is not a terminal or the
/// command is quiet.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    styled(
        len,
        message,
        "{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    )
}

/// A bar that advances by work (examples × epochs, so that its eta weighs a long cell as
/// long) but shows no count of it: its message says which item of how many is running
/// (`cell 3/24: el2n keep 0.3 α 0.5`).
pub fn work_bar(work: u64, message: &str) -> ProgressBar {
    styled(work, message, "{msg} [{bar:30}] {percent}% eta {eta}")
}

/// A bar of the examples one training passes over (`epochs × K`), labelled `message`: the
/// second line under the run's cells.
pub fn samples_bar(samples: u64, message: &str) -> ProgressBar {
    styled(
        samples,
        message,
        "{msg:>16} [{bar:30}] {human_pos}/{human_len} samples {rate} eta {eta}",
    )
}

fn styled(len: u64, message: &str, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || QUIET.load(Ordering::Relaxed) {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = LINES
        .get_or_init(MultiProgress::new)
        .add(ProgressBar::new(len));
    if let Ok(style) = ProgressStyle::with_template(template) {
        // Whole items per second: `{per_sec}` prints four decimals.
        let style = style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        );
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}
