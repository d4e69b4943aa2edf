//! A node's stop, in phases every door watches: serving; draining (`/readyz` says 503 so the
//! load balancer sends nothing new, while everything is still served); closed (the listeners
//! are closed, what is under way finishes); aborting (the bound on finishing has passed: what
//! is left is cut off, and nothing it had not acknowledged is acknowledged).

use tokio::sync::watch;

/// Where a node is in its stop; each phase follows the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Not ready any more, still serving: the load balancer's health check learns it.
    Draining,
    /// No new connection or association; those open finish.
    Closed,
    /// Those still open are cut off.
    Aborting,
}

/// The node's phase, shared by the doors.
pub struct Drain {
    phase: watch::Sender<Phase>,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain {
            phase: watch::Sender::new(Phase::Serving),
        }
    }
}

impl Drain {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// True from the moment the node was asked to stop.
    pub fn draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Moves on to `to`; never back.
    pub fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|p| {
            let later = to > *p;
            if later {
                *p = to;
            }
            later
        });
    }

    /// Resolves once the node has reached `phase` (at once if it has).
    pub fn reached(&self, phase: Phase) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.phase.subscribe();
        async move {
            // the sender lives as long as the archive: an error only means it is gone
            let _ = rx.wait_for(|p| *p >= phase).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward_and_waiters_wake() {
        let d = Drain::default();
        assert!(!d.draining());
        let closed = tokio::spawn(d.reached(Phase::Closed));
        d.advance(Phase::Draining);
        assert!(d.draining());
        tokio::task::yield_now().await;
        assert!(!closed.is_finished(), "draining is not closed yet");
        d.advance(Phase::Aborting);
        d.advance(Phase::Closed);
        assert_eq!(d.phase(), Phase::Aborting, "never back");
        tokio::time::timeout(std::time::Duration::from_secs(5), closed)
            .await
            .expect("woken")
            .unwrap();
        d.reached(Phase::Serving).await;
    }
}
