//! The archive's clock: milliseconds since the Unix epoch, as every row and event records time.

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The archive's time source: the system clock, plus an offset only tests move. Work that
/// decides by age (the tier policy, how long a restored study stays hot) reads it, so a test
/// can step months ahead without waiting.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Now, in milliseconds since the Unix epoch, as this clock reads.
    pub fn now_ms(&self) -> i64 {
        now_ms().saturating_add(self.offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) `ms` milliseconds ahead.
    pub fn advance(&self, ms: i64) {
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_clock_moves_its_clones() {
        let c = Clock::system();
        let other = c.clone();
        let before = c.now_ms();
        other.advance(86_400_000);
        assert!(c.now_ms() - before >= 86_400_000);
        assert!(Clock::system().now_ms() - before < 86_400_000);
    }
}
