//! The bounded wait the providers use while a cloud settles (instances running, servers gone):
//! attempts start 0.5 s apart, the gap doubles up to 5 s, and the whole wait ends at a deadline.

use std::time::Duration;
use tokio::time::Instant;

pub struct Backoff {
    start: Instant,
    delay: Duration,
    max: Duration,
    timeout: Duration,
}

impl Backoff {
    pub fn new(timeout: Duration) -> Self {
        Self {
            start: Instant::now(),
            delay: Duration::from_millis(500),
            max: Duration::from_secs(5),
            timeout,
        }
    }

    /// Time since the wait began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sleeps until the next attempt; `false` (without sleeping) once the deadline has passed.
    pub async fn wait(&mut self) -> bool {
        if self.start.elapsed() > self.timeout {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gaps_double_to_the_cap_and_the_deadline_ends_the_wait() {
        let mut b = Backoff::new(Duration::from_secs(12));
        let mut gaps = Vec::new();
        let mut last = tokio::time::Instant::now();
        while b.wait().await {
            let now = tokio::time::Instant::now();
            gaps.push((now - last).as_millis());
            last = now;
            assert!(gaps.len() < 20, "bounded");
        }
        assert_eq!(&gaps[..5], &[500, 1000, 2000, 4000, 5000]);
    }
}
