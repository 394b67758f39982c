//! A bounded load of mixed page views and form POSTs, as people would send them, with a
//! record of every failure and every POST the client saw succeed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{client, hidden_field};

#[derive(Debug, Default)]
pub struct LoadReport {
    pub requests: usize,
    /// Anything but the expected answer: (what, status or error).
    pub failures: Vec<String>,
    /// Answers that are allowed but not success (503 during a database outage).
    pub unavailable: usize,
    /// Names of the items whose POST got its 303.
    pub acknowledged: Vec<String>,
    pub slowest: Duration,
}

/// What a load may see besides success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerate {
    Nothing,
    /// 503 is allowed (the database is away); 502 and 504 never are.
    ServiceUnavailable,
}

/// Run `workers` browsers against `base` until `stop` is set (or at most `max_duration`),
/// each a seller who signs up first, then cycles through: list page, form page, form POST.
pub async fn run(
    base: &str,
    workers: usize,
    max_duration: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tolerate: Tolerate,
) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let deadline = Instant::now() + max_duration;
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let (base, report, stop) = (base.to_owned(), Arc::clone(&report), Arc::clone(&stop));
            tokio::spawn(async move {
                let http = client();
                let seller = super::Seller::sign_up(&base, &super::fresh_username()).await;
                let cookie = seller.cookie;
                for round in 0..100_000usize {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    browse_once(&http, &base, worker, round, &cookie, &report, tolerate).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    Arc::try_unwrap(report).unwrap().into_inner().unwrap()
}

async fn browse_once(
    http: &reqwest::Client,
    base: &str,
    worker: usize,
    round: usize,
    cookie: &str,
    report: &Mutex<LoadReport>,
    tolerate: Tolerate,
) {
    let record = |what: &str, started: Instant, outcome: Result<u16, String>, expected: u16| {
        let mut r = report.lock().unwrap();
        r.requests += 1;
        r.slowest = r.slowest.max(started.elapsed());
        match outcome {
            Ok(status) if status == expected => true,
            Ok(503) if tolerate == Tolerate::ServiceUnavailable => {
                r.unavailable += 1;
                false
            }
            Ok(status) => {
                r.failures.push(format!("{what}: {status}"));
                false
            }
            Err(e) => {
                r.failures.push(format!("{what}: {e}"));
                false
            }
        }
    };
    let started = Instant::now();
    let list = http.get(format!("{base}/items?per_page=20")).send().await;
    record(
        "GET /items",
        started,
        list.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
        200,
    );

    let started = Instant::now();
    let request = http.get(format!("{base}/")).header("cookie", cookie);
    let form = match request.send().await {
        Ok(response) if response.status() == 200 => {
            record("GET /", started, Ok(200), 200);
            response.text().await.ok()
        }
        Ok(response) => {
            record("GET /", started, Ok(response.status().as_u16()), 200);
            None
        }
        Err(e) => {
            record("GET /", started, Err(e.to_string()), 200);
            None
        }
    };
    let Some(form) = form else { return };
    let name = format!("load w{worker} r{round} {}", rand_suffix());
    let body = [
        ("csrf_token", hidden_field(&form, "csrf_token")),
        ("idempotency_key", hidden_field(&form, "idempotency_key")),
        ("name", name.clone()),
        ("quantity", round.to_string()),
        ("description", "made by the load test".to_owned()),
    ];
    let started = Instant::now();
    let posted = http
        .post(format!("{base}/"))
        .header("cookie", cookie)
        .form(&body)
        .send()
        .await;
    let outcome = posted
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    if record("POST /", started, outcome, 303) {
        report.lock().unwrap().acknowledged.push(name);
    }
}

fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}
