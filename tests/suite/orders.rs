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
    let response = client()
        .post(shop.url("/api/orders"))
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
    // Every state change is on its request's log line.
    let logs: String = shops.iter().map(|s| s.logs()).collect();
    for event in ["order_placed", "order_cancelled", "order_handed_over"] {
        assert!(
            logs.contains(&format!("event=\"{event}\"")),
            "{event} logged"
        );
    }
}

both_backends!(
    racing_buyers_never_take_more_than_the_stock,
    one_key_is_one_order_and_cancels_put_the_stock_back_once,
);
