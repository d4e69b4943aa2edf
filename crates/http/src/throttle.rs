//! Rate limits where one request costs the archive real work: rendering (pictures and
//! thumbnails) and export (original studies, series, instances, frames and bulk data, and
//! WADO-URI). Each user has a bucket for each kind of work (governor's GCRA); beyond it the
//! answer is 429 with Retry-After, and no work is done. Sign-in has its own throttle in the
//! access service; the stream socket bounds its sessions and keyframes itself. Access letter
//! codes, tried with no account, are counted per client address and in all
//! ([`CodeAttempts`]).

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use strata_core::config::HttpConfig;

/// What a request costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Render,
    Export,
}

pub struct Throttles {
    render: DefaultKeyedRateLimiter<String>,
    export: DefaultKeyedRateLimiter<String>,
}

impl Throttles {
    /// `http.renders_per_second` (a burst of five seconds' worth) and `http.exports_per_minute`
    /// (a burst of one minute's worth), per user.
    pub fn new(cfg: &HttpConfig) -> Throttles {
        let n = |v: u32| NonZeroU32::new(v.max(1)).expect("at least one");
        let render = Quota::per_second(n(cfg.renders_per_second))
            .allow_burst(n(cfg.renders_per_second.saturating_mul(5)));
        let export = Quota::per_minute(n(cfg.exports_per_minute));
        Throttles {
            render: RateLimiter::keyed(render),
            export: RateLimiter::keyed(export),
        }
    }
}

/// Access letter codes tried, per client address and from everywhere: what bounds guessing
/// where there is no user to count against. Every attempt counts, right or wrong (a holder
/// needs two or three); a code has 100 random bits, so the limit is there to keep floods off
/// the index rather than to make guessing slow. The buckets are this node's: behind a load
/// balancer each node counts its own.
pub struct CodeAttempts {
    per_remote: DefaultKeyedRateLimiter<std::net::IpAddr>,
    all: governor::DefaultDirectRateLimiter,
}

/// Attempts from everywhere together, as a multiple of those from one address.
const ALL_ADDRESSES_FACTOR: u32 = 60;

impl CodeAttempts {
    /// `http.letter_attempts_per_minute` per address (a burst of a minute's worth), sixty times
    /// as many in all.
    pub fn new(cfg: &HttpConfig) -> CodeAttempts {
        let n = |v: u32| NonZeroU32::new(v.max(1)).expect("at least one");
        let per = cfg.letter_attempts_per_minute;
        CodeAttempts {
            per_remote: RateLimiter::keyed(Quota::per_minute(n(per))),
            all: RateLimiter::direct(Quota::per_minute(n(
                per.saturating_mul(ALL_ADDRESSES_FACTOR)
            ))),
        }
    }

    /// Counts an attempt from `remote`: 429 with Retry-After when it is one too many.
    pub fn check(&self, remote: std::net::IpAddr) -> Result<(), Problem> {
        let refused = self
            .per_remote
            .check_key(&remote)
            .err()
            .or_else(|| self.all.check().err());
        match refused {
            None => Ok(()),
            Some(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                tracing::warn!(%remote, "access letter attempts rate limited");
                Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many access codes tried: retry in {seconds} s"),
                )
                .retry_after(seconds))
            }
        }
    }
}

/// The work a request asks for, from its method and path; None for everything else.
fn work(method: &Method, path: &str) -> Option<Work> {
    if method != Method::GET {
        return None;
    }
    if path == "/wado" || path == "/api/export" {
        return Some(Work::Export);
    }
    let rest = path.strip_prefix("/dicomweb/studies/")?;
    if rest.contains("/rendered") || rest.contains("/thumbnail") {
        return Some(Work::Render);
    }
    // The last segment names a search (series, instances) or metadata, or else an object.
    match rest.rsplit('/').next() {
        Some("series" | "instances" | "metadata") => None,
        _ => Some(Work::Export),
    }
}

/// The middleware: runs after the caller is known.
pub async fn limit(
    State(throttles): State<Arc<Throttles>>,
    Extension(caller): Extension<Caller>,
    request: Request,
    next: Next,
) -> Response {
    let Some(work) = work(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let (bucket, setting) = match work {
        Work::Render => (&throttles.render, "http.renders_per_second"),
        Work::Export => (&throttles.export, "http.exports_per_minute"),
    };
    match bucket.check_key(&caller.principal.user) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::warn!(user = caller.principal.user, ?work, "rate limited");
            let mut response = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests of this kind ({setting}): retry in {seconds} s"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_the_work_they_ask_for() {
        let get = Method::GET;
        let s = "/dicomweb/studies/1.2";
        assert_eq!(work(&get, s), Some(Work::Export));
        assert_eq!(work(&get, &format!("{s}/series")), None);
        assert_eq!(work(&get, &format!("{s}/metadata")), None);
        assert_eq!(work(&get, &format!("{s}/series/3")), Some(Work::Export));
        assert_eq!(work(&get, &format!("{s}/series/3/instances")), None);
        assert_eq!(
            work(&get, &format!("{s}/series/3/instances/4/frames/1,2")),
            Some(Work::Export)
        );
        assert_eq!(work(&get, &format!("{s}/rendered")), Some(Work::Render));
        assert_eq!(
            work(&get, &format!("{s}/series/3/thumbnail")),
            Some(Work::Render)
        );
        assert_eq!(work(&get, "/wado"), Some(Work::Export));
        assert_eq!(work(&get, "/api/export"), Some(Work::Export));
        assert_eq!(work(&get, "/dicomweb/studies"), None);
        assert_eq!(work(&Method::DELETE, s), None);
    }
}
