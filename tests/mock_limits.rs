//! The mock's rate limits as clients see them: the instance-wide buckets hold across concurrent
//! clients, the per-twin 10 writes/s holds (a relationship write counts against its target),
//! the in-flight bound per twin holds, and every 429 carries Retry-After.
//!
//! Tolerance of every rate check: a bucket of `rate`/s with a one-second burst admits at most
//! burst + rate × window, and the window is measured from the first request sent to the last
//! answer received; 5% is added for timer granularity (`rate_bound`). The lower bound (half the
//! rate) only shows the limit is not stricter than configured.

mod mock_ops_common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mock_ops_common::*;
use twinload::limits::Limits;
use twinload::mock::auth::AuthConfig;
use twinload::mock::server::{start, MockConfig, MockHandle};
use twinload::mock::throttle::{Throttle, IN_FLIGHT_RETRY_AFTER};

/// How long each measured window lasts.
const WINDOW: Duration = Duration::from_secs(3);
/// Concurrent clients in each measurement.
const CLIENTS: usize = 6;

fn start_mock(limits: Limits) -> MockHandle {
    start(MockConfig { auth: AuthConfig::Off, ..MockConfig::default() }.with_limits(limits)).expect("mock starts")
}

/// Limits where only the named limit could bind: everything else generous.
fn generous() -> Limits {
    Limits {
        create_delete_per_s: 100_000,
        patch_per_s: 100_000,
        read_per_s: 100_000,
        models_per_s: 100_000,
        query_per_s: 100_000,
        per_twin_writes_per_s: 100_000,
        ..Limits::adt_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_delete_rate_from_a_limits_file_holds_across_concurrent_clients() {
    // A custom limits file, as `--limits path.toml` reads it: create/delete 50/s.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    let limits = Limits { create_delete_per_s: 50, ..generous() };
    let text = format!("default_profile = \"slow\"\n[profiles.slow]\n{}", toml::to_string(&limits).unwrap());
    std::fs::write(&path, text).unwrap();
    let limits = Limits::from_spec(path.to_str().unwrap()).expect("the limits file parses");
    assert_eq!(limits.create_delete_per_s, 50);
    let mock = start_mock(limits);
    let base = mock.url.clone();
    upload_model(&client(), &base).await;

    let url = base.clone();
    let tally = hammer(CLIENTS, WINDOW, 200, move |client, c, i| {
        client.put(twin_url(&url, &format!("c{c}-{i}"))).json(&twin(1))
    })
    .await;
    let bound = rate_bound(50, tally.elapsed_s);
    println!("create/delete 50/s: {tally:?}, bound {bound:.0}");
    assert!(tally.throttled > 0, "{CLIENTS} clients back to back must exceed 50/s: {tally:?}");
    assert!((tally.admitted as f64) <= bound, "admitted {} > bound {bound:.1}", tally.admitted);
    assert!((tally.admitted as f64) >= 25.0 * tally.elapsed_s, "limit stricter than 50/s: {tally:?}");

    // The mock's own counts agree with what the clients saw.
    let s = stats(&base).await;
    assert_eq!(s["throttled_total"], tally.throttled, "{s}");
    assert_eq!(s["requests_by_class"]["create_delete"], tally.admitted + tally.throttled, "{s}");
    assert_eq!(s["twins"], tally.admitted, "every admitted create landed: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_rate_holds_too() {
    let mock = start_mock(Limits { read_per_s: 100, ..generous() });
    let base = mock.url.clone();
    upload_model(&client(), &base).await;
    create_twin(&client(), &base, "r").await;
    let url = base.clone();
    let tally = hammer(CLIENTS, WINDOW, 200, move |client, _, _| client.get(twin_url(&url, "r"))).await;
    let bound = rate_bound(100, tally.elapsed_s);
    println!("read 100/s: {tally:?}, bound {bound:.0}");
    assert!(tally.throttled > 0 && (tally.admitted as f64) <= bound, "{tally:?} bound {bound:.1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_twin_gets_ten_writes_per_second_whatever_the_mix_of_put_and_patch() {
    let mock = start_mock(Limits { per_twin_writes_per_s: 10, ..generous() });
    let base = mock.url.clone();
    upload_model(&client(), &base).await;
    create_twin(&client(), &base, "hot").await;
    // Let the setup write's token come back, so the window starts with a full bucket.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let url = base.clone();
    let puts =
        hammer(CLIENTS / 2, WINDOW, 200, move |client, _, i| client.put(twin_url(&url, "hot")).json(&twin(i as i64)));
    let url = base.clone();
    let patches = hammer(CLIENTS / 2, WINDOW, 204, move |client, _, i| {
        client
            .patch(twin_url(&url, "hot"))
            .header("Content-Type", "application/json-patch+json")
            .body(format!(r#"[{{"op":"replace","path":"/n","value":{i}}}]"#))
    });
    let (puts, patches) = tokio::join!(puts, patches);
    let admitted = puts.admitted + patches.admitted;
    let elapsed = puts.elapsed_s.max(patches.elapsed_s);
    let bound = rate_bound(10, elapsed);
    println!("one twin, 10/s: puts {puts:?}, patches {patches:?}, bound {bound:.0}");
    assert!(puts.throttled + patches.throttled > 0);
    assert!((admitted as f64) <= bound, "admitted {admitted} writes to one twin > {bound:.1}");
    assert!((admitted as f64) >= 5.0 * elapsed, "per-twin limit stricter than 10/s: {admitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relationship_writes_count_against_their_target() {
    const SOURCES: usize = 40;
    let mock = start_mock(Limits { per_twin_writes_per_s: 10, ..generous() });
    let base = mock.url.clone();
    let setup = client();
    upload_model(&setup, &base).await;
    create_twin(&setup, &base, "hub").await;
    for s in 0..SOURCES {
        create_twin(&setup, &base, &format!("src{s}")).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Each relationship comes from another source (40 sources could take 400/s between them),
    // but all point at the hub: the hub's 10/s is what binds.
    let url = base.clone();
    let next = Arc::new(AtomicU64::new(0));
    let tally = hammer(CLIENTS, WINDOW, 200, move |client, _, _| {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let source = format!("src{}", k % SOURCES as u64);
        client.put(relationship_url(&url, &source, &format!("r{k}"))).json(&relationship("hub"))
    })
    .await;
    let bound = rate_bound(10, tally.elapsed_s);
    println!("relationships into one hub: {tally:?}, bound {bound:.0}");
    assert!(tally.throttled > 0);
    assert!((tally.admitted as f64) <= bound, "admitted {} relationships into the hub > {bound:.1}", tally.admitted);
    let s = stats(&base).await;
    assert_eq!(s["relationships"], tally.admitted, "{s}");
}

#[test]
fn in_flight_writes_per_twin_never_exceed_the_bound() {
    const BOUND: u32 = 3;
    const THREADS: usize = 8;
    const ATTEMPTS: usize = 200;
    let throttle = Arc::new(Throttle::new(&Limits {
        per_twin_writes_per_s: 1_000_000,
        per_twin_in_flight: BOUND,
        ..Limits::adt_default()
    }));
    let current = Arc::new(AtomicU32::new(0));
    let highest = Arc::new(AtomicU32::new(0));
    let refused = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (throttle, current, highest, refused) =
                (throttle.clone(), current.clone(), highest.clone(), refused.clone());
            std::thread::spawn(move || {
                for _ in 0..ATTEMPTS {
                    match throttle.admit_twin_writes(&["busy"]) {
                        Ok(permit) => {
                            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                            highest.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(500));
                            current.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
                        Err(wait) => {
                            assert_eq!(wait, IN_FLIGHT_RETRY_AFTER);
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::yield_now();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let highest = highest.load(Ordering::SeqCst);
    println!("highest in flight {highest}, refused {}", refused.load(Ordering::Relaxed));
    assert!(highest <= BOUND, "{highest} writes in flight on one twin, bound {BOUND}");
    assert!(refused.load(Ordering::Relaxed) > 0, "{THREADS} threads on {BOUND} slots must be refused sometimes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_off_throttles_nothing() {
    let mock = start(MockConfig::default().without_auth().without_limits()).unwrap();
    let base = mock.url.clone();
    upload_model(&client(), &base).await;
    let url = base.clone();
    let tally = hammer(CLIENTS, Duration::from_secs(1), 200, move |client, _, i| {
        client.put(twin_url(&url, "same")).json(&twin(i as i64))
    })
    .await;
    println!("limits off: {tally:?}");
    assert_eq!(tally.throttled, 0);
    let per_twin_bound = rate_bound(10, tally.elapsed_s);
    assert!(tally.admitted as f64 > per_twin_bound, "one twin got more than 10/s allows: {tally:?}");
}
