//! Progress for long offline commands: an indicatif bar on a terminal, plain lines otherwise
//! (CI logs, pipes), so the same command is readable in both places.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    last_line: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} ({eta})")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what);
            b
        });
        Progress {
            bar,
            what,
            total,
            done: 0,
            last_line: Instant::now(),
        }
    }

    pub fn inc(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(b) => b.inc(1),
            None => {
                if self.last_line.elapsed() > Duration::from_secs(2) || self.done == self.total {
                    eprintln!("{}: {}/{}", self.what, self.done, self.total);
                    self.last_line = Instant::now();
                }
            }
        }
    }

    /// Print a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
