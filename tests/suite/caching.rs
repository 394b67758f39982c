//! Repeat views: the list and item pages' `ETag`s, the 304 that answers a conditional GET
//! before anything is rendered, and the validator moving as soon as another instance of
//! the same database writes. Each backend gets a database of its own (PostgreSQL: a
//! cluster of its own, since its validator moves with any write to the cluster).

use crate::common;

use common::{client, Backend, PgCluster, Shop};
use reqwest::header::{CACHE_CONTROL, COOKIE, ETAG, IF_NONE_MATCH, SET_COOKIE, VARY};
use serde_json::json;

/// A database no other test writes to.
struct PrivateDb {
    url: String,
    _cluster: Option<PgCluster>,
    _dir: tempfile::TempDir,
}

fn private_db(backend: Backend) -> PrivateDb {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Postgres => {
            let cluster = PgCluster::start();
            PrivateDb {
                url: cluster.create_database("caching"),
                _cluster: Some(cluster),
                _dir: dir,
            }
        }
        Backend::Sqlite => PrivateDb {
            url: format!("sqlite:{}", dir.path().join("shop.db").display()),
            _cluster: None,
            _dir: dir,
        },
    }
}

/// GET `url` (with a cookie and an `If-None-Match`, when given): status, `ETag`, body.
async fn get(url: &str, cookie: Option<&str>, tag: Option<&str>) -> (u16, String, String) {
    let mut request = client().get(url);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    if let Some(tag) = tag {
        request = request.header(IF_NONE_MATCH, tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
    // An item's page embeds the browser's form token; any page that hands out a cookie
    // is the browser's alone too. Every page (not the API) varies with the cookie.
    let per_browser = url.contains("/items/") || response.headers().contains_key("set-cookie");
    let control = if per_browser {
        "private, no-cache"
    } else {
        "no-cache"
    };
    assert_eq!(response.headers()[CACHE_CONTROL], control, "{url}");
    if !url.contains("/api/") {
        assert_eq!(response.headers()["vary"], "Cookie", "{url}");
    }
    (status, etag, response.text().await.unwrap())
}

/// Two instances of one private database, and an item created through the first.
async fn two_instances_with_a_lamp(backend: Backend) -> (PrivateDb, Shop, Shop, serde_json::Value) {
    let db = private_db(backend);
    let (a, b) = (Shop::start(&db.url, &[]), Shop::start(&db.url, &[]));
    let item = common::create_item(
        &a,
        &json!({"name": "Lamp", "quantity": 1, "description": "brass"}),
    )
    .await;
    (db, a, b, item)
}

async fn repeat_views_cost_nothing_until_any_instance_writes(backend: Backend) {
    let (_db, a, b, item) = two_instances_with_a_lamp(backend).await;
    let id = item["id"].as_i64().unwrap();

    // The same data has the same tag on every instance: b answers a's tag with a 304.
    let (status, tag, html) = get(&a.url("/items"), None, None).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(">Lamp<") && tag.starts_with("W/\""),
        "{tag} {html}"
    );
    let (status, again, body) = get(&b.url("/items"), None, Some(&tag)).await;
    assert_eq!(
        (status, again.as_str(), body.as_str()),
        (304, tag.as_str(), "")
    );
    // Another query is another page.
    assert_eq!(get(&b.url("/items?q=lamp"), None, Some(&tag)).await.0, 200);
    let (status, api_tag, _) = get(&a.url("/api/items"), None, None).await;
    assert_eq!(status, 200);
    assert_ne!(api_tag, tag, "the JSON list is not the HTML list");
    assert_eq!(get(&b.url("/api/items"), None, Some(&api_tag)).await.0, 304);

    // Any write, by the other instance, moves the validator: an edit, a new item, a delete.
    let http = client();
    let token = common::api_token(&b).await;
    let edited = http
        .put(b.url(&format!("/api/items/{id}")))
        .bearer_auth(&token)
        .json(&json!({"name": "Lamp, polished", "quantity": 1, "description": "brass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let (status, after_edit, html) = get(&a.url("/items"), None, Some(&tag)).await;
    assert_eq!(status, 200, "the edit is seen at once");
    assert!(
        html.contains(">Lamp, polished<") && after_edit != tag,
        "{html}"
    );
    assert_eq!(get(&a.url("/api/items"), None, Some(&api_tag)).await.0, 200);
    common::create_item(
        &b,
        &json!({"name": "Chair", "quantity": 2, "description": "oak"}),
    )
    .await;
    let (status, after_create, html) = get(&a.url("/items"), None, Some(&after_edit)).await;
    assert_eq!(status, 200);
    assert!(html.contains(">Chair<") && after_create != after_edit);
    let deleted = http
        .delete(b.url(&format!("/api/items/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, after_delete, html) = get(&a.url("/items"), None, Some(&after_create)).await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("Lamp") && after_delete != after_create,
        "{html}"
    );
    assert_eq!(
        get(&b.url("/items"), None, Some(&after_delete)).await.0,
        304
    );
}

/// An item's page embeds a signed-in browser's form token: its tag is per browser
/// (`Vary: Cookie`), and moves when the item changes. An anonymous reader's page has no
/// form of theirs: nothing is made for them (no cookie), and every such reader shares it.
async fn item_pages_are_validated_per_browser(backend: Backend) {
    let (_db, a, b, item) = two_instances_with_a_lamp(backend).await;
    let path = format!("/items/{}", item["id"]);

    let first = client().get(a.url(&path)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()[VARY], "Cookie");
    assert!(
        first.headers().get(SET_COOKIE).is_none(),
        "an anonymous reader is handed no cookie"
    );
    let (status, tag, _) = get(&a.url(&path), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        get(&b.url(&path), None, Some(&tag)).await.0,
        304,
        "another anonymous reader, the same item"
    );
    let seller = common::Seller::sign_up(&a.url(""), "sid").await;
    let (status, signed_in_tag, _) = get(&a.url(&path), Some(&seller.cookie), Some(&tag)).await;
    assert_eq!(
        status, 200,
        "a signed-in browser's page carries its own token"
    );
    assert_eq!(
        get(&b.url(&path), Some(&seller.cookie), Some(&signed_in_tag))
            .await
            .0,
        304,
        "same browser, same item"
    );
    let cookie = seller.cookie.clone();
    let tag = signed_in_tag;

    let edited = client()
        .put(b.url(&format!("/api/items/{}", item["id"])))
        .bearer_auth(common::api_token(&b).await)
        .json(&json!({"name": "Lamp", "quantity": 2, "description": "brass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let (status, moved, html) = get(&a.url(&path), Some(&cookie), Some(&tag)).await;
    assert_eq!(status, 200, "the edited item is sent again");
    assert!(moved != tag && html.contains(">2<"), "{html}");
}

both_backends!(
    repeat_views_cost_nothing_until_any_instance_writes,
    item_pages_are_validated_per_browser,
);
