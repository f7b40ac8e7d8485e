//! Log output (`TOKENGATE_LOG_FORMAT`): every event is one flat line, a JSON object or logfmt,
//! with `time`, `level`, `target` and `msg` first, then its fields; never colour codes (logs
//! are read by pipelines and written to files). Access-log lines (`access`) come from the same
//! writer, with their fields rendered by `access`. Traces (`otel`) are exported over OTLP when
//! the standard `OTEL_*` variables name an endpoint.

pub mod access;
pub mod line;
pub mod otel;

use std::fmt;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use line::Line;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// logfmt: `key=value`, values quoted when they must be.
    Text,
    /// One JSON object per line.
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// The format `init` chose; JSON when logging was set up some other way (tests).
pub fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Json)
}

/// Lines waiting for the writer thread, at most; a request that logs past this waits for it
/// (no line is dropped).
const LOG_QUEUE_LINES: usize = 64 * 1024;

/// Held until the process ends: its drop exports the spans still queued, then writes the log
/// lines still queued (in that order, so that a failed export is still logged).
#[must_use = "dropping the guard stops the log writer and span export"]
pub struct Guard {
    _traces: otel::Guard,
    _log: tracing_appender::non_blocking::WorkerGuard,
}

/// Install the process's log subscriber: `RUST_LOG` filters (default `info`), stderr. Lines
/// are written by one thread, in batches (one `write` per batch instead of one per line: a
/// request's access-log line is then not a system call). Then the OTLP span exporter, when the
/// environment configures one (`otel::init`). Call outside any async runtime.
pub fn init(format: Format) -> Guard {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("tokengate-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .event_format(Flat(format))
        .init();
    Guard { _traces: otel::init(), _log: guard }
}

/// The event formatter: one flat line per event.
struct Flat(Format);

impl<S, N> FormatEvent<S, N> for Flat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Line::start(&mut writer, self.0);
        line.plain("time", humantime::format_rfc3339_micros(std::time::SystemTime::now()))?;
        line.str("level", level(meta.level()))?;
        line.str("target", meta.target())?;
        let mut fields = Fields { line: &mut line, raw: meta.target() == access::TARGET, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        line.end()?;
        writeln!(writer)
    }
}

fn level(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

/// Writes an event's fields into its line. An access event's message is its fields, already
/// rendered for this format (`access::Entry`), and is written as it is.
struct Fields<'l, 'w> {
    line: &'l mut Line<'w>,
    raw: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(field: &Field) -> &'static str {
        match field.name() {
            "message" => "msg",
            name => name,
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = if self.raw && field.name() == "message" {
            self.line.raw(format_args!("{value:?}"))
        } else {
            self.line.str(Self::key(field), &format!("{value:?}"))
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self.line.str(Self::key(field), value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.result = self.line.num(Self::key(field), value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.result = self.line.num(Self::key(field), value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.result.is_ok() {
            // JSON has no NaN or infinity.
            self.result = match value.is_finite() {
                true => self.line.num(Self::key(field), value),
                false => self.line.str(Self::key(field), &value.to_string()),
            };
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_ok() {
            self.result = self.line.num(Self::key(field), value);
        }
    }
}
