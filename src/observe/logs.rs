//! clbsync's log lines: stderr, text (`2024-01-15T10:30:45Z INFO message key=value`, UTC) or JSON.

use std::io::IsTerminal;

/// Sends tracing's events to stderr (lifting the progress spinner around each line): `json` one JSON object per
/// event, else [`TextLine`]; `verbose` (`-v`, `-vv`) opens clbsync's debug and trace levels and the libraries'
/// warnings; `RUST_LOG` overrides both.
pub fn init(verbose: u8, json: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::time::UtcTime;

    // Libraries' own lines (rustls, hyper, kube) stay out of the default level: every error they describe
    // reaches clbsync's report and messages with its context. -v lets their warnings through; RUST_LOG decides
    // everything.
    let (deps, level) = match verbose {
        0 => ("off", "info"),
        1 => ("warn", "debug"),
        _ => ("info", "trace"),
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{deps},clbsync={level},clb_emulator={level}")));
    // A log line that cannot be written (stderr closed) is dropped: reporting that on stderr would panic.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| super::progress::Stderr)
        .log_internal_errors(false);
    if json {
        builder.json().with_ansi(false).with_timer(UtcTime::rfc_3339()).with_target(false).init();
    } else {
        builder.with_ansi(log_colour()).event_format(TextLine).init();
    }
}

/// Colour in text logs only on a terminal, and never with `NO_COLOR` set (<https://no-color.org>): a file, a pipe
/// or `kubectl logs` gets plain text.
fn log_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `2024-01-15T10:30:45Z INFO message key=value`: UTC (the `Z`), no padding, one line per event.
struct TextLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TextLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let now = time::OffsetDateTime::now_utc().format(&format).map_err(|_| std::fmt::Error)?;
        let level = event.metadata().level();
        if writer.has_ansi_escapes() {
            write!(writer, "\x1b[2m{now}\x1b[0m {level} ")?;
        } else {
            write!(writer, "{now} {level} ")?;
        }
        // Fields may carry server text: formatted plain, then escaped, so one event is one line and drives no
        // terminal (on a terminal only the timestamp is dimmed).
        let mut fields = String::new();
        ctx.field_format().format_fields(tracing_subscriber::fmt::format::Writer::new(&mut fields), event)?;
        writeln!(writer, "{}", crate::model::printable(&fields))
    }
}
