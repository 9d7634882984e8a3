//! Cron triggers: one run per tick across processes, one after downtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use paysteps::RunStatus;
use paysteps::testing::engine::{CRON_TICK, Clock, Engine, Function, Trigger};

use crate::common::{Backend, TestDb, test_config};

crate::on_both_backends!(a_tick_fires_once_across_processes_and_once_after_downtime);

/// 2026-11-23T10:01:00Z
const START_MS: i64 = 1_795_428_060_000;
const FIVE_MINUTES: Duration = Duration::from_secs(300);

fn every_five_minutes(counter: Arc<AtomicU32>) -> Function {
    Function::new(
        "rollup",
        Trigger::cron("*/5 * * * *").expect("cron"),
        move |ctx| {
            let counter = counter.clone();
            async move {
                let tick = ctx.event.data["tick"].as_i64().unwrap_or_default();
                ctx.step
                    .run("count", || async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok(tick)
                    })
                    .await
            }
        },
    )
}

async fn process(db: &TestDb, clock: Clock, counter: Arc<AtomicU32>) -> Engine {
    Engine::builder(db.store().await)
        .config(test_config(clock))
        .register(every_five_minutes(counter))
        .build()
        .expect("engine")
}

async fn a_tick_fires_once_across_processes_and_once_after_downtime(backend: Backend) {
    let db = TestDb::create(backend).await;
    let clock = Clock::manual(START_MS);
    let counter = Arc::new(AtomicU32::new(0));
    let a = process(&db, clock.clone(), counter.clone()).await;
    let b = process(&db, clock.clone(), counter.clone()).await;

    assert_eq!(
        a.fire_cron().await.expect("fire"),
        0,
        "the first look only starts the schedule"
    );
    assert_eq!(b.fire_cron().await.expect("fire"), 0);

    // 10:05 is due: both processes try, one run starts.
    clock.advance(Duration::from_secs(240));
    let fired = a.fire_cron().await.expect("fire") + b.fire_cron().await.expect("fire");
    assert_eq!(fired, 1, "one tick, one run across processes");
    a.run_until_idle().await.expect("run");
    b.run_until_idle().await.expect("run");
    assert_eq!(counter.load(Ordering::SeqCst), 1);

    // Nothing more until 10:10.
    clock.advance(Duration::from_secs(60));
    assert_eq!(a.fire_cron().await.expect("fire"), 0);

    // Down for three hours: the missed ticks fire once, as the latest one.
    for _ in 0..36 {
        clock.advance(FIVE_MINUTES);
    }
    let fired = b.fire_cron().await.expect("fire") + a.fire_cron().await.expect("fire");
    assert_eq!(fired, 1, "missed ticks must collapse into one");
    a.run_until_idle().await.expect("run");
    assert_eq!(counter.load(Ordering::SeqCst), 2);

    let ticks = a
        .store()
        .count(
            "SELECT COUNT(*) FROM events WHERE name = $1",
            paysteps::args![CRON_TICK],
        )
        .await
        .expect("count");
    assert_eq!(ticks, 2);
    let runs = a.store().runs(&Default::default()).await.expect("runs");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    // The second run is for 13:05, the latest tick before the clock's 13:06.
    let latest: i64 = serde_json::from_str(runs[0].output.as_deref().unwrap_or("0")).expect("tick");
    assert_eq!(latest, START_MS - 60_000 + 3 * 3_600_000 + 300_000);
}
