//! The responder's log under a flood: drops are counted per interval, not logged per
//! packet. A test binary of its own, so that no other test's thread touches the log's
//! callsites while this one's subscriber is installed.

use std::time::{Duration, Instant};

use ippm_ike::config::Limits;
use ippm_ike::engine::{Engine, OsRandom};

mod common;
use common::flood::{Flood, responder};
use common::quiet_limits;

/// Where the log of one test goes.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn drops_are_logged_as_counts_per_interval_not_per_packet() {
    let log = Log::default();
    let w = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let limits = Limits {
            half_open_per_source_max: 10,
            ..quiet_limits()
        };
        let mut b = Engine::new(responder(limits), Box::new(OsRandom)).unwrap();
        let now = Instant::now();
        let mut others = Vec::new();
        let mut flood = Flood::new(&["198.51.100.9"]);
        let t = flood.send(&mut b, now, 3000, &mut others);
        assert_eq!(t.dropped, 2990, "{t:?}");
        // The first drop is told at once, the rest wait for the interval's count.
        let lines = log.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("half-open limit"), "{lines:?}");
        // Past the interval the next drop brings the count, and the timers do too.
        let later = now + Duration::from_secs(11);
        flood.send(&mut b, later, 1, &mut others);
        let lines = log.lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[1].contains("per_source_limit=2991"), "{lines:?}");
        flood.send(&mut b, later, 500, &mut others);
        b.handle_timeout(later + Duration::from_secs(11));
        let lines = log.lines();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[3].contains("per_source_limit=500"), "{lines:?}");
    });
}
