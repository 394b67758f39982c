//! Buying, against the real binary on PostgreSQL and on SQLite, through three instances
//! of one database: racing buyers never take more than the stock, one key is one order,
//! concurrent cancels put the stock back once, and who may see or move an order.

use crate::common;

use common::{client, Backend, Seller, Shop, TestDb};
use serde_json::{json, Value};

/// Three instances of one database, a seller with an item of `quantity` at 12.50, and
/// the seller's API token.
async fn shop_with_item(backend: Backend, quantity: i64) -> (TestDb, Vec<Shop>, String, i64) {
    let db = TestDb::new(backend);
    let shops: Vec<Shop> = (0..3).map(|_| Shop::start(&db.url, &[])).collect();
    let seller = Seller::sign_up(&shops[0].url, "sally").await;
    let token = seller.api_token(&shops[0].url).await;
    let item: Value = client()
        .post(shops[0].url("/api/items"))
        .bearer_auth(&token)
        .json(&json!({"name": "Lamp", "quantity": quantity, "description": "brass", "price_minor": 1250}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["price_minor"], 1250, "{item}");
    assert_eq!(item["currency"], "EUR", "{item}");
    let id = item["id"].as_i64().unwrap();
    (db, shops, token, id)
}

async fn stock(db: &TestDb, item: i64) -> i64 {
    db.rows(&format!("SELECT quantity FROM items WHERE id = {item}"))
        .await[0]
        .parse()
        .unwrap()
}

async fn buy(shop: &Shop, token: &str, key: &str, item: i64, quantity: i64) -> (u16, Value) {
    buy_at(&shop.url, token, key, item, quantity).await
}

/// `buy` through the instance at `base` (for tasks, which cannot borrow a `Shop`).
async fn buy_at(base: &str, token: &str, key: &str, item: i64, quantity: i64) -> (u16, Value) {
    let response = client()
        .post(format!("{base}/api/orders"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"item_id": item, "quantity": quantity, "price_minor": 1250}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn racing_buyers_never_take_more_than_the_stock(backend: Backend) {
    let (db, shops, _, item) = shop_with_item(backend, 7).await;
    // 50 buyers, each through the Buy form of the item page on one of the instances.
    let mut buyers = Vec::new();
    for n in 0..50 {
        let shop = &shops[n % 3];
        buyers.push((
            shop.url.clone(),
            Seller::sign_up(&shop.url, &format!("buyer{n}")).await,
        ));
    }
    let mut forms = Vec::new();
    for (base, buyer) in &buyers {
        let page = format!("{base}/items/{item}");
        forms.push((base.clone(), buyer.open_form(&page).await));
    }
    let racing: Vec<_> = forms
        .into_iter()
        .map(|(base, form)| {
            tokio::spawn(async move {
                common::post_form(
                    &client(),
                    &format!("{base}/items/{item}/buy"),
                    &form,
                    &[
                        ("idempotency_key", form.idempotency_key.as_str()),
                        ("quantity", "1"),
                        ("price_minor", "1250"),
                    ],
                )
                .await
                .status()
                .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for answer in racing {
        statuses.push(answer.await.unwrap());
    }
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((count(303), count(409)), (7, 43), "{statuses:?}");
    assert_eq!(stock(&db, item).await, 0);
    let orders = db
        .rows("SELECT COUNT(*), SUM(l.quantity) FROM orders o JOIN order_lines l ON l.order_id = o.id")
        .await;
    assert_eq!(orders, ["7|7"]);
    // The item page says so, and nobody can buy the eighth.
    let (_, page) = common::get_text(&shops[1].url(&format!("/items/{item}"))).await;
    assert!(page.contains("sold out"), "{page}");
}

async fn one_key_is_one_order_and_cancels_put_the_stock_back_once(backend: Backend) {
    let (db, shops, seller_token, item) = shop_with_item(backend, 5).await;
    let ben = Seller::sign_up(&shops[0].url, "ben").await;
    let token = ben.api_token(&shops[0].url).await;
    // The same key ten times at once, over the three instances: one order.
    let sends: Vec<_> = (0..10)
        .map(|n| {
            let (url, token) = (shops[n % 3].url.clone(), token.clone());
            tokio::spawn(async move {
                let response = client()
                    .post(format!("{url}/api/orders"))
                    .bearer_auth(&token)
                    .header("idempotency-key", "ben-lamp-0001")
                    .json(&json!({"item_id": item, "quantity": 3, "price_minor": 1250}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (status, body["id"].as_i64())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for send in sends {
        let (status, id) = send.await.unwrap();
        assert_eq!(status, 201);
        ids.push(id.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");
    assert_eq!(stock(&db, item).await, 2);
    let order = ids[0];
    let (status, body) = buy(&shops[1], &token, "ben-lamp-0001", item, 2).await;
    assert_eq!(status, 422, "the same key for another order: {body}");
    let (status, body) = buy(&shops[1], &token, "ben-lamp-0002", item, 3).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("Only 2 left")
            || body.to_string().contains("Only 2 left"),
        "{body}"
    );
    // The first order sent again when too few are left for it: it is that order still.
    let (status, again) = buy(&shops[2], &token, "ben-lamp-0001", item, 3).await;
    assert_eq!(
        (status, again["id"].as_i64()),
        (201, Some(order)),
        "{again}"
    );
    assert_eq!(stock(&db, item).await, 2, "a retry takes nothing");

    // Ten cancels at once, by the buyer and the seller: one cancels, the stock is back once.
    let cancels: Vec<_> = (0..10)
        .map(|n| {
            let url = shops[n % 3].url(&format!("/api/orders/{order}/cancel"));
            let token = if n % 2 == 0 {
                token.clone()
            } else {
                seller_token.clone()
            };
            tokio::spawn(
                async move { common::status_of(client().post(url).bearer_auth(token)).await },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for cancel in cancels {
        statuses.push(cancel.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(stock(&db, item).await, 5);

    // Handed over, it can no longer be cancelled; the stock stays.
    let (status, placed) = buy(&shops[2], &token, "ben-lamp-0003", item, 1).await;
    assert_eq!(status, 201);
    let second = placed["id"].as_i64().unwrap();
    let hand_over = shops[0].url(&format!("/api/orders/{second}/hand-over"));
    assert_eq!(
        common::status_of(client().post(&hand_over).bearer_auth(&token)).await,
        403,
        "the buyer does not hand over"
    );
    let handed: Value = common::json_of(client().post(&hand_over).bearer_auth(&seller_token)).await;
    assert_eq!(handed["state"], "handed_over");
    let cancel = shops[0].url(&format!("/api/orders/{second}/cancel"));
    assert_eq!(
        common::status_of(client().post(&cancel).bearer_auth(&token)).await,
        409
    );
    assert_eq!(stock(&db, item).await, 4);

    // Who sees it: its buyer and seller; a stranger is told there is no such order.
    let eve = Seller::sign_up(&shops[0].url, "eve").await;
    let eve_token = eve.api_token(&shops[0].url).await;
    let shown = shops[0].url(&format!("/api/orders/{second}"));
    assert_eq!(
        common::status_of(client().get(&shown).bearer_auth(&eve_token)).await,
        404
    );
    assert_eq!(
        eve.get(&shops[0].url(&format!("/orders/{second}")))
            .await
            .status(),
        404
    );
    assert_eq!(
        common::status_of(client().post(&cancel).bearer_auth(&eve_token)).await,
        404
    );
    let order: Value = common::json_of(client().get(&shown).bearer_auth(&seller_token)).await;
    assert_eq!(
        (order["buyer"].as_str(), order["seller"].as_str()),
        (Some("ben"), Some("sally"))
    );
    assert_eq!(
        (
            order["unit_price_minor"].as_i64(),
            order["total_minor"].as_i64()
        ),
        (Some(1250), Some(1250))
    );
    // The seller cannot buy their own item; nobody anonymous can.
    let (status, _) = buy(&shops[0], &seller_token, "sally-own-0001", item, 1).await;
    assert_eq!(status, 403);
    let anonymous = client()
        .post(shops[0].url("/api/orders"))
        .json(&json!({"item_id": item, "quantity": 1, "price_minor": 1250}));
    assert_eq!(common::status_of(anonymous).await, 401);
    // A price changed since the buyer saw it: nothing taken, and the new price said.
    let etag = client()
        .get(shops[0].url(&format!("/api/items/{item}")))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let edit = |tag: &str| {
        client()
            .put(shops[1].url(&format!("/api/items/{item}")))
            .bearer_auth(&seller_token)
            .header("if-match", tag)
            .json(&json!({"name": "Brass lamp", "quantity": 4, "description": "brass", "price_minor": 1400}))
    };
    assert_eq!(common::status_of(edit(&etag)).await, 200);
    assert_eq!(
        common::status_of(edit(&etag)).await,
        412,
        "an edit from a stale copy"
    );
    let (status, body) = buy(&shops[2], &token, "ben-lamp-0004", item, 1).await;
    assert_eq!(status, 409);
    assert!(body.to_string().contains("14.00 EUR"), "{body}");
    // The orders keep what was bought, at the price paid.
    let order: Value = common::json_of(client().get(&shown).bearer_auth(&token)).await;
    assert_eq!(
        (
            order["item_name"].as_str(),
            order["unit_price_minor"].as_i64()
        ),
        (Some("Lamp"), Some(1250))
    );
    // An anonymous Buy goes to log in (the page itself offers them a login link back to it).
    let form = common::open_form(&client(), &shops[0].url("/login")).await;
    let anonymous = common::post_form(
        &client(),
        &shops[0].url(&format!("/items/{item}/buy")),
        &form,
        &[("quantity", "1"), ("price_minor", "1400")],
    )
    .await;
    assert_eq!(anonymous.status(), 303);
    let location = anonymous.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/login?next="), "{location}");
    // An edit form opened before a sale saves nothing (409), and shows the stock now.
    let sally = Seller::log_in(&shops[0].url, "sally", common::PASSWORD)
        .await
        .unwrap();
    let edit_page = shops[0].url(&format!("/items/{item}/edit"));
    let stale_form = sally.open_form(&edit_page).await;
    let html = sally.get(&edit_page).await.text().await.unwrap();
    let version = common::hidden_field(&html, "version");
    let (status, _) = buy(&shops[1], &token, "ben-lamp-0005", item, 1).await;
    assert_eq!(status, 409, "still at 12.50 in the buyer's eyes");
    let bought: Value = common::json_of(
        client()
            .post(shops[1].url("/api/orders"))
            .bearer_auth(&token)
            .header("idempotency-key", "ben-lamp-0006")
            .json(&json!({"item_id": item, "quantity": 1, "price_minor": 1400})),
    )
    .await;
    assert_eq!(bought["state"], "placed", "{bought}");
    let saved = common::post_form(
        &client(),
        &shops[2].url(&format!("/items/{item}")),
        &stale_form,
        &[
            ("version", version.as_str()),
            ("name", "Brass lamp"),
            ("quantity", "4"),
            ("description", "brass"),
            ("price", "14.00"),
        ],
    )
    .await;
    assert_eq!(saved.status(), 409, "an edit from before the sale");
    assert!(saved.text().await.unwrap().contains("now has 3 in stock"));
    assert_eq!(stock(&db, item).await, 3, "the sale stands");
    // A disabled buyer's token buys nothing.
    let out = db.shop(&["user", "disable", "ben"], "");
    assert!(out.status.success(), "{}", common::said(&out));
    // (Each instance hears of it from the database a moment later; at 12.50 a buy that
    // got through would be refused for its price, 409, and take nothing.)
    common::heard("a disabled user's token refused", 401, || async {
        buy(&shops[0], &token, "ben-lamp-0007", item, 1).await.0
    })
    .await;
    // Once every order of it is handed over, the seller may delete the item: the orders
    // still show what was bought, at the price paid.
    let waiting = bought["id"].as_i64().unwrap();
    let hand_over = shops[2].url(&format!("/api/orders/{waiting}/hand-over"));
    let delete = || {
        client()
            .delete(shops[0].url(&format!("/api/items/{item}")))
            .bearer_auth(&seller_token)
    };
    assert_eq!(common::status_of(delete()).await, 409, "an order waits");
    assert_eq!(
        common::status_of(client().post(&hand_over).bearer_auth(&seller_token)).await,
        200
    );
    assert_eq!(common::status_of(delete()).await, 204);
    for (id, name, price) in [(second, "Lamp", 1250), (waiting, "Brass lamp", 1400)] {
        let order: Value = common::json_of(
            client()
                .get(shops[1].url(&format!("/api/orders/{id}")))
                .bearer_auth(&seller_token),
        )
        .await;
        assert_eq!(
            (
                order["item_name"].as_str(),
                order["unit_price_minor"].as_i64(),
                order["state"].as_str()
            ),
            (Some(name), Some(price), Some("handed_over")),
            "{order}"
        );
    }
    // Every state change is on its request's log line.
    let logs: String = shops.iter().map(|s| s.logs()).collect();
    for event in ["order_placed", "order_cancelled", "order_handed_over"] {
        assert!(
            logs.contains(&format!("event=\"{event}\"")),
            "{event} logged"
        );
    }
}

/// A small random number generator (xorshift), seeded per client: the mix is random,
/// and the same on every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One buyer's part of the mix: buys (1–3 of a random item, each with its own key) and
/// cancels of their own orders.
async fn buyer_mix(base: String, token: String, items: Vec<i64>, seed: u64) {
    let mut dice = Dice(seed);
    let mut mine: Vec<i64> = Vec::new();
    for n in 0..30 {
        if dice.below(3) == 0 && !mine.is_empty() {
            let order = mine[dice.below(mine.len() as u64) as usize];
            let url = format!("{base}/api/orders/{order}/cancel");
            let status = common::status_of(client().post(url).bearer_auth(&token)).await;
            assert!(status == 200 || status == 409, "cancel: {status}");
        } else {
            let item = items[dice.below(items.len() as u64) as usize];
            let quantity = 1 + dice.below(3);
            let response = client()
                .post(format!("{base}/api/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", format!("mix-{seed}-{n:04}"))
                .json(&json!({"item_id": item, "quantity": quantity, "price_minor": 1250}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(status == 201 || status == 409, "buy: {status}");
            if status == 201 {
                let order: Value = response.json().await.unwrap();
                mine.push(order["id"].as_i64().unwrap());
            }
        }
    }
}

/// The seller's part: hand-overs of waiting orders, and stock changes made from the
/// item's `ETag`; the changes accepted, per item.
async fn seller_mix(base: String, token: String, items: Vec<i64>) -> Vec<(i64, i64)> {
    let mut dice = Dice(99);
    let mut accepted = Vec::new();
    for _ in 0..20 {
        if dice.below(2) == 0 {
            let list: Value = common::json_of(
                client()
                    .get(format!("{base}/api/orders?as=seller"))
                    .bearer_auth(&token),
            )
            .await;
            let waiting: Vec<i64> = list["orders"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["state"] == "placed")
                .map(|o| o["id"].as_i64().unwrap())
                .collect();
            if let Some(order) = waiting.first() {
                let url = format!("{base}/api/orders/{order}/hand-over");
                let status = common::status_of(client().post(url).bearer_auth(&token)).await;
                assert!(status == 200 || status == 409, "hand-over: {status}");
            }
        } else {
            let item = items[dice.below(items.len() as u64) as usize];
            let url = format!("{base}/api/items/{item}");
            let response = client().get(&url).send().await.unwrap();
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            let now: Value = response.json().await.unwrap();
            let quantity = now["quantity"].as_i64().unwrap();
            let change = dice.below(6) as i64 - 2;
            if quantity + change < 0 {
                continue;
            }
            let status = common::status_of(
                client()
                    .put(&url)
                    .bearer_auth(&token)
                    .header("if-match", etag)
                    .json(&json!({"name": now["name"], "quantity": quantity + change, "description": "brass", "price_minor": 1250})),
            )
            .await;
            assert!(status == 200 || status == 412, "edit: {status}");
            if status == 200 {
                accepted.push((item, change));
            }
        }
    }
    accepted
}

async fn a_random_mix_conserves_the_stock_and_a_backup_keeps_it(backend: Backend) {
    let (db, shops, seller_token, first) = shop_with_item(backend, 20).await;
    let mut items = vec![first];
    for name in ["Chair", "Kettle"] {
        let item: Value = common::json_of(
            client()
                .post(shops[1].url("/api/items"))
                .bearer_auth(&seller_token)
                .json(&json!({"name": name, "quantity": 20, "description": "brass", "price_minor": 1250})),
        )
        .await;
        items.push(item["id"].as_i64().unwrap());
    }
    let mut clients = Vec::new();
    for n in 0..3u64 {
        let base = shops[n as usize].url.clone();
        let buyer = Seller::sign_up(&base, &format!("mixer{n}")).await;
        let token = buyer.api_token(&base).await;
        clients.push(tokio::spawn(buyer_mix(
            base,
            token,
            items.clone(),
            7 + n * 31,
        )));
    }
    let seller = tokio::spawn(seller_mix(
        shops[2].url.clone(),
        seller_token.clone(),
        items.clone(),
    ));
    for client in clients {
        client.await.unwrap();
    }
    let accepted = seller.await.unwrap();
    for item in &items {
        let changes: i64 = accepted
            .iter()
            .filter(|(i, _)| i == item)
            .map(|(_, c)| c)
            .sum();
        let taken: i64 = db
            .rows(&format!(
                "SELECT COALESCE(SUM(l.quantity), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE l.item_id = {item} AND o.state IN ('placed', 'handed_over')"
            ))
            .await[0]
            .parse()
            .unwrap();
        assert_eq!(
            stock(&db, *item).await + taken,
            20 + changes,
            "item {item}: stock + placed + handed over = the start + the seller's accepted changes"
        );
    }
    let states = db
        .rows("SELECT state, COUNT(*) FROM orders GROUP BY state ORDER BY state")
        .await;
    println!("  orders by state: {states:?}, seller's accepted changes: {accepted:?}");

    // An item with orders waiting is not deleted.
    let placed = db
        .rows("SELECT l.item_id FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.state = 'placed' LIMIT 1")
        .await;
    if let Some(item) = placed.first() {
        let response = client()
            .delete(shops[0].url(&format!("/api/items/{item}")))
            .bearer_auth(&seller_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("wait for hand-over"));
    }

    // A backup carries the orders with the stock they took; a restore brings both back.
    let before_orders = db
        .rows("SELECT id, state, total_minor FROM orders ORDER BY id")
        .await;
    let before_stock = db
        .rows("SELECT id, quantity, price_minor FROM items ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        common::shop_command(dir.path())
            .env("SHOP_DATABASE__URL", &db.url)
            .env("SHOP_BACKUP__DIR", dir.path().join("backups"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "backup",
        "--output",
        dir.path().join("b.backup").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::said(&out));
    assert!(
        common::said(&out).contains(&format!("{} orders", before_orders.len())),
        "{}",
        common::said(&out)
    );
    db.rows("DELETE FROM orders").await;
    let out = run(&[
        "restore",
        "--force",
        dir.path().join("b.backup").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::said(&out));
    assert_eq!(
        db.rows("SELECT id, state, total_minor FROM orders ORDER BY id")
            .await,
        before_orders
    );
    assert_eq!(
        db.rows("SELECT id, quantity, price_minor FROM items ORDER BY id")
            .await,
        before_stock
    );
    let lines = db.rows("SELECT COUNT(*) FROM order_lines").await;
    assert_eq!(lines, [before_orders.len().to_string()]);

    // A disabled user buys nothing.
    let out = db.shop(&["user", "disable", "mixer0"], "");
    assert!(out.status.success(), "{}", common::said(&out));
    let mixer = Seller::log_in(&shops[0].url, "mixer0", common::PASSWORD).await;
    assert!(mixer.is_err(), "a disabled user cannot sign in to buy");
}

both_backends!(
    racing_buyers_never_take_more_than_the_stock,
    one_key_is_one_order_and_cancels_put_the_stock_back_once,
    a_random_mix_conserves_the_stock_and_a_backup_keeps_it,
);

/// Two instances of one SQLite file, with a 1 s query timeout. Another connection holds
/// the file's write lock for 2.5 s while 24 orders queue on both instances: each is answered
/// within a few seconds (a 503 while the lock is held, never a 5xx of another kind), nothing
/// is marked down, and once the lock is free every write goes through at once: no order cut
/// off while it waited left its connection holding the lock. The 503'd orders, sent again
/// with their keys, are one order each, and the stock adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_queued_behind_a_locked_sqlite_file_leave_it_free() {
    use sqlx::Connection;
    use std::time::{Duration, Instant};
    let db = TestDb::new(Backend::Sqlite);
    let quick = [("SHOP_DATABASE__QUERY_TIMEOUT_SECS", "1")];
    let shops: Vec<Shop> = (0..2).map(|_| Shop::start(&db.url, &quick)).collect();
    let seller = Seller::sign_up(&shops[0].url, "sally").await;
    let seller_token = seller.api_token(&shops[0].url).await;
    let created = common::json_of(
        client()
            .post(shops[0].url("/api/items"))
            .bearer_auth(&seller_token)
            .json(&json!({"name": "Lamp", "quantity": 100, "description": "brass", "price_minor": 1250})),
    )
    .await;
    let item = created["id"].as_i64().unwrap();
    let buyer = Seller::sign_up(&shops[0].url, "ben").await;
    let token = buyer.api_token(&shops[0].url).await;

    let mut lock = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let queued: Vec<_> = (0..24)
        .map(|n| {
            let (base, token) = (shops[n % 2].url.clone(), token.clone());
            tokio::spawn(async move {
                let asked = Instant::now();
                let answer = buy_at(&base, &token, &format!("queued-key-{n}"), item, 1).await;
                (n, answer, asked.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    let mut refused = Vec::new();
    let mut sold = 0;
    for task in queued {
        let (n, (status, body), took) = task.await.unwrap();
        assert!(status == 201 || status == 503, "{n}: {status} {body}");
        assert!(took < Duration::from_secs(8), "{n} answered in {took:?}");
        if status == 503 {
            refused.push(n);
        } else {
            sold += 1;
        }
    }
    assert!(!refused.is_empty(), "the lock was held past the timeout");

    // The file is free: fresh orders on both instances go through, and quickly. One after
    // another: ten at once on two instances queue on the file's lock, and with a 1 s busy
    // timeout the last of them could wait past it behind the other instance's writers (a
    // 503 about the queue, not a lock left held: what this checks).
    let asked = Instant::now();
    for n in 0..10 {
        let (status, body) = buy_at(
            &shops[n % 2].url,
            &token,
            &format!("fresh-key-{n}"),
            item,
            1,
        )
        .await;
        assert_eq!(status, 201, "{body}");
        sold += 1;
    }
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "served at once: {:?}",
        asked.elapsed()
    );
    // What was refused lost nothing: sent again, one order each.
    for n in &refused {
        let (status, body) =
            buy_at(&shops[0].url, &token, &format!("queued-key-{n}"), item, 1).await;
        assert_eq!(status, 201, "{n}: {body}");
        sold += 1;
    }
    let orders = db.rows("SELECT COUNT(*) FROM orders").await;
    assert_eq!(orders, [sold.to_string()]);
    assert_eq!(stock(&db, item).await, 100 - sold);
    for shop in &shops {
        assert!(
            !shop.logs().contains("database unavailable"),
            "a locked file is no outage:\n{}",
            shop.logs()
        );
    }
}
