//! The systemd protocol, on this host without systemd as PID 1: a socket passed by
//! `systemd-socket-activate`, and readiness, status, watchdog and stopping messages read
//! from a real `NOTIFY_SOCKET` datagram socket.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{add_item, client, Backend, PgCluster, Shop, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_the_socket_systemd_passes() {
    let db = TestDb::new(Backend::Postgres);
    let shop = Shop::start_socket_activated(&db.url, &[("SHOP_INSTANCE", "8001")]);
    assert!(
        shop.logs().contains("socket=\"passed by systemd\""),
        "{}",
        shop.logs()
    );
    assert!(
        shop.logs().contains("shop{instance=8001}"),
        "the instance is in every log line"
    );
    let http = client();
    let response = http.get(shop.url("/items")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-shop-instance"], "8001");
    assert_eq!(
        add_item(&shop, "Socket", "1", "activated").await.status(),
        303
    );
    assert!(common::get_text(&shop.url("/items"))
        .await
        .1
        .contains("activated"));
}

#[test]
fn a_socket_that_is_not_a_listening_tcp_socket_is_refused() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let shop = common::shop_command(dir.path());
    let mut child = Command::new("systemd-socket-activate")
        .args(["--datagram", "-l", &format!("127.0.0.1:{port}")])
        .arg(shop.get_program())
        .args(shop.get_args())
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut status = None;
    let exited = common::poll_until(Duration::from_secs(20), || {
        let _ = udp.send_to(b"wake up", ("127.0.0.1", port));
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(exited, "shop did not exit");
    let status = status.unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "systemd passed fd 3, which is a datagram socket; shop needs a listening TCP socket"
        ),
        "{stderr}"
    );
}

/// Liveness is the process, readiness is the database: started while PostgreSQL is down,
/// shop is READY at once (serving 503s, saying so and since when on its status line),
/// its watchdog pings never stop for an outage, and the status line follows the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_and_watchdog_through_an_outage() {
    let cluster = PgCluster::start();
    let url = cluster.create_database("notify");
    cluster.stop();
    let t0 = Instant::now();
    let mut shop = Shop::start_socket_activated(&url, &[("WATCHDOG_USEC", "1000000")]);
    let notify = shop.notifications();

    // READY=1 after the short start-up wait, not once the database is back.
    assert!(
        notify.wait_for("READY=1", t0, Duration::from_secs(5)),
        "{:?}",
        notify.all()
    );
    let ready = notify.first("READY=1", t0).unwrap();
    assert!(
        ready.0 - t0 < Duration::from_secs(3),
        "ready {:?} after start",
        ready.0 - t0
    );
    assert!(
        ready.1.contains(&format!(
            "STATUS=serving on 127.0.0.1:{}, answering 503: database unreachable since ",
            shop.port
        )),
        "{ready:?}"
    );

    // Watchdog pings every half interval while the database is down…
    let quiet_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        notify.count("WATCHDOG=1", quiet_from) >= 3,
        "pings while the database is down: {:?}",
        notify.all()
    );

    // …the status line says when it is back…
    let back = Instant::now();
    cluster.restart();
    let ok = format!(
        "STATUS=serving on 127.0.0.1:{}, database ok (postgresql)",
        shop.port
    );
    assert!(
        notify.wait_for(&ok, back, Duration::from_secs(5)),
        "{:?}\n{}",
        notify.all(),
        shop.logs()
    );

    // …and when it goes away again, with no traffic at all (the probe notices).
    let down = Instant::now();
    cluster.stop();
    let lost = format!(
        "STATUS=serving on 127.0.0.1:{}, answering 503: database unreachable since ",
        shop.port
    );
    assert!(
        notify.wait_for(&lost, down, Duration::from_secs(10)),
        "{:?}",
        notify.all()
    );
    let still = Instant::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(notify.count("WATCHDOG=1", still) >= 1, "{:?}", notify.all());
    cluster.restart();

    let term = Instant::now();
    shop.terminate();
    assert!(
        notify.wait_for("STOPPING=1", term, Duration::from_secs(10)),
        "{:?}",
        notify.all()
    );
    assert_eq!(shop.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_activated_instance_exits_cleanly() {
    let db = TestDb::new(Backend::Sqlite);
    let mut shop =
        Shop::start_socket_activated(&db.url, &[("SHOP_SERVER__IDLE_EXIT_AFTER_SECS", "1")]);
    let started = Instant::now();
    assert_eq!(
        shop.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        shop.logs()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        shop.logs().contains("no requests for a while"),
        "{}",
        shop.logs()
    );

    // Without a socket from systemd the setting is ignored: nothing would start it again.
    let shop = Shop::start(&db.url, &[("SHOP_SERVER__IDLE_EXIT_AFTER_SECS", "1")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        common::status_of(client().get(shop.url("/healthz"))).await,
        200
    );
    assert!(shop.logs().contains("idle_exit_after_secs is ignored"));
}
