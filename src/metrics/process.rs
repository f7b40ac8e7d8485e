//! The standard `process_*` metrics, read at each scrape. It replaces the prometheus crate's
//! process collector, whose `process_cpu_seconds_total` counts whole seconds (its clock ticks
//! divided as integers): a gateway using 0.3 CPU seconds a minute showed a flat line. Here CPU
//! time comes from `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, in nanoseconds, and is exported
//! as a float counter; the rest is what the old collector gave, from `/proc/self`.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};
use rustix::process::{getrlimit, Resource};
use rustix::time::{clock_gettime, ClockId};

pub const CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
pub const OPEN_FDS: &str = "process_open_fds";
pub const MAX_FDS: &str = "process_max_fds";
pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
pub const START_TIME: &str = "process_start_time_seconds";
pub const THREADS: &str = "process_threads";

/// This process's metrics; `collect` reads them afresh.
pub struct ProcessCollector {
    descs: Vec<Desc>,
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    resident: IntGauge,
    virt: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        let cpu = Counter::new(CPU_SECONDS_TOTAL, "Total user and system CPU time spent in seconds.").expect("valid");
        let int = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help)).expect("valid metric");
        let open_fds = int(OPEN_FDS, "Number of open file descriptors.");
        let max_fds = int(MAX_FDS, "Maximum number of open file descriptors.");
        let resident = int(RESIDENT_MEMORY, "Resident memory size in bytes.");
        let virt = int(VIRTUAL_MEMORY, "Virtual memory size in bytes.");
        let threads = int(THREADS, "Number of OS threads in the process.");
        let start_time =
            Gauge::new(START_TIME, "Start time of the process since unix epoch in seconds.").expect("valid metric");
        start_time.set(start_time_seconds().unwrap_or_else(now_seconds));
        let mut descs = Vec::new();
        descs.extend(cpu.desc().into_iter().cloned());
        for g in [&open_fds, &max_fds, &resident, &virt, &threads] {
            descs.extend(g.desc().into_iter().cloned());
        }
        descs.extend(start_time.desc().into_iter().cloned());
        ProcessCollector { descs, cpu, open_fds, max_fds, resident, virt, start_time, threads }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector::new()
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The counter only goes up: add what was spent since the last scrape. Concurrent
        // scrapes may both add; the second sees (almost) nothing left to add.
        let spent = cpu_seconds() - self.cpu.get();
        if spent > 0.0 {
            self.cpu.inc_by(spent);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
        // Unlimited is shown as the largest value, as the old collector did not set it at all.
        let limit = getrlimit(Resource::Nofile).current.unwrap_or(i64::MAX as u64);
        self.max_fds.set(i64::try_from(limit).unwrap_or(i64::MAX));
        if let Some(stat) = Stat::read() {
            self.virt.set(stat.vsize);
            self.resident.set(stat.rss_pages.saturating_mul(rustix::param::page_size() as i64));
            self.threads.set(stat.threads);
        }
        let mut families = self.cpu.collect();
        for g in [&self.open_fds, &self.max_fds, &self.resident, &self.virt, &self.threads] {
            families.extend(g.collect());
        }
        families.extend(self.start_time.collect());
        families
    }
}

/// User and system CPU time of the whole process (every thread, living or ended), in seconds,
/// to the nanosecond.
pub fn cpu_seconds() -> f64 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// When this process started (Unix time, seconds; to the clock tick): boot time plus the
/// process's start in ticks since boot.
pub fn start_time_seconds() -> Option<f64> {
    let ticks = Stat::read()?.start_ticks as f64;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: f64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Some(boot + ticks / rustix::param::clock_ticks_per_second() as f64)
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The fields of `/proc/self/stat` (proc(5)) used here.
struct Stat {
    threads: i64,
    start_ticks: u64,
    vsize: i64,
    rss_pages: i64,
}

impl Stat {
    fn read() -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// The command name (field 2) is in parentheses and may hold spaces and parentheses: the
    /// fields are counted from the last `)`, where field 3 (`state`) follows.
    fn parse(stat: &str) -> Option<Stat> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).copied();
        Some(Stat {
            threads: field(20)?.parse().ok()?,
            start_ticks: field(22)?.parse().ok()?,
            vsize: field(23)?.parse().ok()?,
            rss_pages: field(24)?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time has sub-second resolution: burning ~50 ms of CPU shows as a fraction of a
    /// second, in the exported counter too (the old collector exported whole seconds).
    #[test]
    fn cpu_seconds_are_fractional() {
        let collector = ProcessCollector::new();
        let read = |c: &ProcessCollector| {
            let families = c.collect();
            let cpu = families.iter().find(|f| f.name() == CPU_SECONDS_TOTAL).expect("cpu family");
            cpu.get_metric()[0].get_counter().get_value()
        };
        let before = read(&collector);
        let start = cpu_seconds();
        let mut x = 0u64;
        while cpu_seconds() - start < 0.05 {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        let after = read(&collector);
        let burnt = after - before;
        assert!((0.05..1.0).contains(&burnt), "burnt {burnt} s of CPU");
        assert!(after.fract() != 0.0, "whole seconds only: {after}");
    }

    #[test]
    fn every_process_metric_is_collected() {
        let families = ProcessCollector::new().collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for name in [CPU_SECONDS_TOTAL, OPEN_FDS, MAX_FDS, RESIDENT_MEMORY, VIRTUAL_MEMORY, START_TIME, THREADS] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let value = |name: &str| {
            let f = families.iter().find(|f| f.name() == name).unwrap();
            let m = &f.get_metric()[0];
            // Only one of the two is set; the other is 0.
            m.get_gauge().get_value() + m.get_counter().get_value()
        };
        assert!(value(OPEN_FDS) >= 3.0 && value(MAX_FDS) >= value(OPEN_FDS));
        assert!(value(RESIDENT_MEMORY) > 1e6 && value(VIRTUAL_MEMORY) >= value(RESIDENT_MEMORY));
        assert!(value(THREADS) >= 1.0);
        let started = value(START_TIME);
        let now = now_seconds();
        assert!(started <= now + 1.0 && started > now - 24.0 * 3600.0, "start {started}, now {now}");
    }

    /// A command name with spaces and parentheses does not shift the fields.
    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 1234 98765 321 18446744073709551615";
        let stat = Stat::parse(line).unwrap();
        assert_eq!((stat.threads, stat.start_ticks, stat.vsize, stat.rss_pages), (5, 1234, 98765, 321));
        assert!(Stat::parse("garbage").is_none());
    }
}
