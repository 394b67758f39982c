//! Where a load's time goes: the CPU time each part of the stack (the shop instances,
//! the database server, nginx, the load generator) spent per request while the load ran,
//! read from `/proc` (a process and every process under it) and, for the load generator
//! the benchmark waits for, from `getrusage(RUSAGE_CHILDREN)`. On these two shared cores
//! every part takes its CPU from the same budget: the sum per request is what bounds the
//! rate, whichever part is slowest.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Measured, Plan};

/// The processes a request passes through.
pub(super) struct Stack {
    pub shops: Vec<u32>,
    pub database: Option<u32>,
    pub nginx: Option<u32>,
}

/// One load's CPU time per request, in microseconds, by part (None: not in this stack).
pub(super) struct Split {
    load: String,
    rate: f64,
    shop: Option<f64>,
    database: Option<f64>,
    nginx: Option<f64>,
    generator: f64,
}

/// Run `load` (wrk or pgbench, for `plan.seconds`) and split the CPU time it cost over
/// `stack`'s parts and the load generator.
pub(super) fn split(
    name: &str,
    plan: &Plan,
    stack: &Stack,
    load: impl FnOnce() -> Measured,
) -> (Measured, Split) {
    let parts = |s: &Stack| {
        let used = |pids: &[u32]| pids.iter().map(|&p| seconds_of_tree(p)).sum::<f64>();
        [
            (!s.shops.is_empty()).then(|| used(&s.shops)),
            s.database.map(|p| used(&[p])),
            s.nginx.map(|p| used(&[p])),
        ]
    };
    let before = parts(stack);
    let generator_before = seconds_of_waited_children();
    let measured = load();
    let after = parts(stack);
    let generator = seconds_of_waited_children() - generator_before;
    let requests = (measured.rate * f64::from(plan.seconds)).max(1.0);
    let per_request = |b: Option<f64>, a: Option<f64>| Some((a? - b?) / requests * 1e6);
    let split = Split {
        load: name.to_owned(),
        rate: measured.rate,
        shop: per_request(before[0], after[0]),
        database: per_request(before[1], after[1]),
        nginx: per_request(before[2], after[2]),
        generator: generator / requests * 1e6,
    };
    (measured, split)
}

impl Split {
    /// Rounds of one load as one: each part's CPU per request over all their requests
    /// (rounds of equal length: weighed by their rates).
    pub(super) fn of_rounds(rounds: Vec<Split>) -> Split {
        let total: f64 = rounds
            .iter()
            .map(|r| r.rate)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let weighed = |part: fn(&Split) -> Option<f64>| -> Option<f64> {
            rounds
                .iter()
                .map(|r| Some(part(r)? * r.rate))
                .sum::<Option<f64>>()
                .map(|sum| sum / total)
        };
        Split {
            load: rounds.first().map_or_else(String::new, |r| r.load.clone()),
            rate: total / rounds.len().max(1) as f64,
            shop: weighed(|r| r.shop),
            database: weighed(|r| r.database),
            nginx: weighed(|r| r.nginx),
            generator: weighed(|r| Some(r.generator)).unwrap_or_default(),
        }
    }

    /// "instances · database · nginx", microseconds per request ("–" for a part the
    /// stack has not).
    pub(super) fn parts_text(&self) -> String {
        let cell = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
        format!(
            "{} · {} · {}",
            cell(self.shop),
            cell(self.database),
            cell(self.nginx)
        )
    }
}

/// The splits as a table: microseconds of CPU per request, and how many of the machine's
/// cores the load kept busy.
pub(super) fn render(title: &str, splits: &[Split]) -> String {
    let cell = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
    let mut out = format!(
        "\n{title}\n\n| load | req/s | shop µs | database µs | nginx µs | load generator µs | all µs | cores busy |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for s in splits {
        let all: f64 = [s.shop, s.database, s.nginx].iter().flatten().sum::<f64>() + s.generator;
        writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {:.0} | {all:.0} | {:.2} |",
            s.load,
            s.rate,
            cell(s.shop),
            cell(s.database),
            cell(s.nginx),
            s.generator,
            all * s.rate / 1e6
        )
        .unwrap();
    }
    out
}

/// CPU seconds (user and system) used by `root` and every process under it, those running
/// and those they waited for.
fn seconds_of_tree(root: u32) -> f64 {
    let mut parent = HashMap::new();
    let mut ticks = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, …, utime (the 12th),
        // stime, cutime, cstime.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(ppid), Some(used)) = (number(1), (11..=14).map(number).sum::<Option<u64>>()) {
            parent.insert(pid, ppid as u32);
            ticks.insert(pid, used);
        }
    }
    let under_root = |mut pid: u32| loop {
        if pid == root {
            return true;
        }
        match parent.get(&pid) {
            Some(&up) if up != 0 && up != pid => pid = up,
            _ => return false,
        }
    };
    let total: u64 = ticks
        .iter()
        .filter(|(&pid, _)| under_root(pid))
        .map(|(_, &t)| t)
        .sum();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    total as f64 / per_second as f64
}

/// CPU seconds used by this process's children that it has waited for (wrk, pgbench).
fn seconds_of_waited_children() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
