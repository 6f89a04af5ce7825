//! The one way flotilla waits and retries: SSH while a machine boots, a lock held by another
//! run, a state database that restarts, a swarm or Kubernetes member that settles, a cloud that
//! throttles or is still creating. A wait starts with a first gap that doubles up to a cap, may
//! be spread by jitter (so many waiters do not retry in step), and never sleeps past its
//! deadline: the last gap is cut to the time left, and then the wait is over.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Backoff {
    start: Instant,
    delay: Duration,
    max: Duration,
    timeout: Duration,
    jitter: bool,
}

impl Backoff {
    /// A wait of at most `timeout`: gaps 0.5 s, 1 s, 2 s ... up to 5 s.
    pub fn new(timeout: Duration) -> Self {
        Self {
            start: Instant::now(),
            delay: Duration::from_millis(500),
            max: Duration::from_secs(5),
            timeout,
            jitter: false,
        }
    }

    /// The first gap (later ones double from it).
    pub fn first(mut self, gap: Duration) -> Self {
        self.delay = gap;
        self.max = self.max.max(gap);
        self
    }

    /// The longest gap.
    pub fn cap(mut self, max: Duration) -> Self {
        self.max = max;
        self.delay = self.delay.min(max);
        self
    }

    /// The same gap every time.
    pub fn every(self, gap: Duration) -> Self {
        self.first(gap).cap(gap)
    }

    /// Each gap between 80 % and 100 % of its nominal length, at random.
    pub fn jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// Time since the wait began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.elapsed() >= self.timeout
    }

    /// The next gap, cut to the time left; `None` once the deadline has passed.
    pub fn next_gap(&mut self) -> Option<Duration> {
        let left = self.timeout.checked_sub(self.elapsed())?;
        if left.is_zero() {
            return None;
        }
        let mut gap = self.delay;
        if self.jitter {
            gap = gap.mul_f64(rand::random_range(0.8..=1.0));
        }
        self.delay = (self.delay * 2).min(self.max);
        Some(gap.min(left))
    }

    /// Sleeps until the next attempt; `false` (without sleeping) once the deadline has passed.
    pub async fn wait(&mut self) -> bool {
        match self.next_gap() {
            Some(gap) => {
                tokio::time::sleep(gap).await;
                true
            }
            None => false,
        }
    }

    /// `wait` for code that is not async (a lock wait in a command's main thread).
    pub fn wait_blocking(&mut self) -> bool {
        match self.next_gap() {
            Some(gap) => {
                std::thread::sleep(gap);
                true
            }
            None => false,
        }
    }
}

/// A pause that is not a retry (a schedule: `heal --watch` between rounds, a server backing off
/// after a failed accept): the same clock as every wait.
pub async fn pause(d: Duration) {
    tokio::time::sleep(d).await;
}

/// `pause` for code that is not async (a test hook that holds a run at a step).
pub fn pause_blocking(d: Duration) {
    std::thread::sleep(d);
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
        // 0.5 + 1 + 2 + 4 = 7.5 s; the last gap is cut to the 4.5 s left.
        assert_eq!(gaps, vec![500, 1000, 2000, 4000, 4500]);
        assert_eq!(b.elapsed(), Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn first_cap_every_and_jitter() {
        let mut b = Backoff::new(Duration::from_secs(10))
            .first(Duration::from_millis(200))
            .cap(Duration::from_millis(700));
        let gaps: Vec<u128> = std::iter::from_fn(|| b.next_gap().map(|g| g.as_millis()))
            .take(4)
            .collect();
        assert_eq!(gaps, vec![200, 400, 700, 700]);
        let mut e = Backoff::new(Duration::from_secs(3)).every(Duration::from_secs(1));
        let mut n = 0;
        while e.wait().await {
            n += 1;
        }
        assert_eq!(n, 3);
        let mut j = Backoff::new(Duration::from_secs(60))
            .every(Duration::from_secs(10))
            .jitter();
        for _ in 0..5 {
            let g = j.next_gap().expect("gap");
            assert!(
                g >= Duration::from_secs(8) && g <= Duration::from_secs(10),
                "{g:?}"
            );
        }
    }
}
