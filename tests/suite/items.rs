//! The shop's pages and JSON API against the real binary, on PostgreSQL and on SQLite.

use crate::common;

use common::{
    add_item, client, get_text, json_of, open_form, post_form, Backend, Seller, Shop, TestDb,
};
use serde_json::{json, Value};

fn start(backend: Backend) -> (TestDb, Shop) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    (db, shop)
}

async fn create_then_list_shows_every_field(backend: Backend) {
    let (_db, shop) = start(backend);
    let response = add_item(&shop, "  Brass lamp ", "3", "Works, needs a bulb").await;
    assert_eq!(response.status(), 303, "Post/Redirect/Get");
    assert_eq!(
        response.headers()["location"],
        "/items",
        "a relative redirect"
    );
    add_item(&shop, "Chair", "12", "Oak").await;

    for path in ["/items", "/success"] {
        let (status, html) = get_text(&shop.url(path)).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("[,"), "the ancestor's empty list: {html}");
        for field in [
            "<td><a href=\"/items/1\">Brass lamp</a><td>3<td>not for sale<td>Works, needs a bulb<td>",
            ">Chair</a>",
            "</a><td>12<td>not for sale<td>Oak<td>",
        ] {
            assert!(html.contains(field), "{path} lacks {field}:\n{html}");
        }
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(
            html.matches(&format!(">{today} ")).count(),
            2,
            "date added shown for each item"
        );
        assert!(
            html.find("Chair").unwrap() < html.find("Brass lamp").unwrap(),
            "newest first"
        );
    }
}

async fn bad_form_keeps_input_and_explains(backend: Backend) {
    let (_db, shop) = start(backend);
    let long = "x".repeat(257);
    let response = add_item(&shop, "Kept name", "lots", &long).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("value=\"Kept name\""), "input kept:\n{html}");
    assert!(html.contains("value=\"lots\""), "bad input kept too");
    assert!(html.contains(&format!(">{long}</textarea>")));
    assert!(html.contains(
        "id=\"quantity-error\">The quantity must be a whole number, not &quot;lots&quot;."
    ));
    assert!(html.contains("id=\"description-error\">The description is 257 characters long"));
    assert!(
        !html.contains("id=\"name-error\""),
        "a good field has no message"
    );

    let response = add_item(&shop, "   ", "1000001", "ok").await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("Please enter a name."));
    assert!(html.contains("between 0 and 1000000"));

    let items = json_of(client().get(shop.url("/api/items"))).await;
    assert_eq!(items["items"], json!([]), "nothing half-written");
}

async fn csrf_is_required_and_shared_between_instances(backend: Backend) {
    let (db, shop) = start(backend);
    let http = client();
    let session = open_form(&http, &shop.url("/")).await;
    let item = [("name", "a"), ("quantity", "1"), ("description", "b")];

    // No token, a wrong token, no cookie: 403 with a page that says what to do.
    let response = http
        .post(shop.url("/"))
        .header("cookie", &session.cookie)
        .form(&item)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("reload the page"));
    let mut wrong = session.clone();
    wrong.token = "00".repeat(32);
    assert_eq!(
        post_form(&http, &shop.url("/"), &wrong, &item)
            .await
            .status(),
        403
    );
    // Without the session cookie: nobody signed in may create anything, and is sent to
    // the login page, which comes back to the form.
    let mut body = vec![("csrf_token", session.token.as_str())];
    body.extend(item);
    let anonymous = http.post(shop.url("/")).form(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/login?next=%2F");
    // Another browser's token does not fit this browser's cookie.
    let other = open_form(&http, &shop.url("/")).await;
    let mixed = common::FormSession {
        cookie: session.cookie.clone(),
        token: other.token,
        idempotency_key: other.idempotency_key,
    };
    assert_eq!(
        post_form(&http, &shop.url("/"), &mixed, &item)
            .await
            .status(),
        403
    );

    // A second instance with the same secret accepts the first one's form…
    let twin = Shop::start(&db.url, &[]);
    assert_eq!(
        post_form(&http, &twin.url("/"), &session, &item)
            .await
            .status(),
        303
    );
    // …and one with another secret does not.
    let stranger = Shop::start(
        &db.url,
        &[(
            "SHOP_SECURITY__SECRET",
            "another-secret-0123456789abcdef01234",
        )],
    );
    assert_eq!(
        post_form(&http, &stranger.url("/"), &session, &item)
            .await
            .status(),
        403
    );

    let items: Value = common::json_of(http.get(shop.url("/api/items"))).await;
    assert_eq!(
        items["items"].as_array().unwrap().len(),
        1,
        "only the accepted form created an item"
    );
}

async fn output_is_escaped(backend: Backend) {
    let (_db, shop) = start(backend);
    assert_eq!(
        add_item(
            &shop,
            "<script>alert(1)</script>",
            "1",
            "\"quoted\" & <b>bold</b>"
        )
        .await
        .status(),
        303
    );
    let (_, html) = get_text(&shop.url("/items")).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"));
    let (_, html) = get_text(&shop.url("/items?q=%3Cscript%3E")).await;
    assert!(
        !html.contains("<script>alert"),
        "search box value escaped too"
    );
}

/// The `href` of the page's `rel` link ("next" or "prev"), unescaped.
fn link(html: &str, rel: &str) -> Option<String> {
    let marker = format!("rel=\"{rel}\" href=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.replace("&amp;", "&"))
}

fn row_names(html: &str) -> Vec<String> {
    html.split("<tr><td><a href=\"/items/")
        .skip(1)
        .map(|row| {
            row.split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Following the pages' links (`after=`/`before=` positions) visits every item once, in
/// order, forwards and back, searched or not; `?page=` still reaches the same pages.
async fn keyset_links_walk_the_whole_list(backend: Backend) {
    let (_db, shop) = start(backend);
    for i in 1..=9 {
        let description = if i % 2 == 0 { "even lamp" } else { "odd chair" };
        let body = json!({"name": format!("item {i}"), "quantity": i, "description": description});
        common::create_item(&shop, &body).await;
    }
    for (query, expected) in [
        ("per_page=2", (1..=9).rev().collect::<Vec<_>>()),
        ("per_page=2&q=LAMP", vec![8, 6, 4, 2]),
    ] {
        let expected: Vec<String> = expected.iter().map(|i| format!("item {i}")).collect();
        let mut url = format!("/items?{query}");
        let mut pages: Vec<Vec<String>> = Vec::new();
        loop {
            let (status, html) = get_text(&shop.url(&url)).await;
            assert_eq!(status, 200, "{url}");
            pages.push(row_names(&html));
            let number = pages.len();
            assert!(html.contains(&format!("Page {number}")), "{url}: {html}");
            // The same page by number (an offset) has the same items.
            let by_number = get_text(&shop.url(&format!("/items?{query}&page={number}"))).await;
            assert_eq!(row_names(&by_number.1), pages[number - 1], "page {number}");
            match link(&html, "next") {
                Some(next) => url = next,
                None => break,
            }
        }
        assert_eq!(pages.concat(), expected, "{query}: forwards");
        // And back from the last page by the prev links, to the plain first page.
        let mut back: Vec<Vec<String>> = Vec::new();
        loop {
            let (_, html) = get_text(&shop.url(&url)).await;
            back.push(row_names(&html));
            match link(&html, "prev") {
                Some(prev) => url = prev,
                None => break,
            }
        }
        back.reverse();
        assert_eq!(back, pages, "{query}: backwards");
        assert!(!url.contains("before="), "the newest page is plain: {url}");
    }

    // The API gives the next position too; a position it did not make is a 400.
    let http = client();
    let first = json_of(http.get(shop.url("/api/items?per_page=4"))).await;
    let after = first["next_after"].as_str().expect("next_after").to_owned();
    let second = json_of(http.get(shop.url(&format!("/api/items?per_page=4&after={after}")))).await;
    assert_eq!(second["items"][0]["name"], "item 5");
    let response = http
        .get(shop.url("/items?after=nonsense"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("after must be a position"));
}

async fn pagination_and_search(backend: Backend) {
    let (_db, shop) = start(backend);
    let http = common::api_client(&shop).await;
    for i in 1..=7 {
        let description = if i % 3 == 0 {
            "has a RED stripe"
        } else {
            "plain"
        };
        let body = json!({"name": format!("item {i}"), "quantity": i, "description": description});
        assert_eq!(
            common::status_of(http.post(shop.url("/api/items")).json(&body)).await,
            201
        );
    }
    let page = |query: &'static str| {
        let http = http.clone();
        let url = shop.url(&format!("/api/items{query}"));
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let names = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let first = page("?per_page=3").await;
    assert_eq!(names(&first), ["item 7", "item 6", "item 5"]);
    assert_eq!(first["next_page"], 2);
    let last = page("?per_page=3&page=3").await;
    assert_eq!(names(&last), ["item 1"]);
    assert_eq!(last["next_page"], Value::Null);
    assert_eq!(
        page("?per_page=5000").await["per_page"],
        1000,
        "per_page is capped at 1000"
    );
    assert_eq!(names(&page("").await).len(), 7);

    // Search matches name or description, ignoring case.
    assert_eq!(names(&page("?q=red").await), ["item 6", "item 3"]);
    assert_eq!(names(&page("?q=ITEM%205").await), ["item 5"]);
    assert_eq!(
        names(&page("?q=%25").await),
        Vec::<String>::new(),
        "% is not a wildcard"
    );

    // Fewer than three characters (no trigram index helps): still a substring search.
    assert_eq!(names(&page("?q=eD").await), ["item 6", "item 3"]);

    // The page shows the same, with links that keep the query.
    let (status, html) = get_text(&shop.url("/items?per_page=2&q=plain")).await;
    assert_eq!(status, 200);
    let next = link(&html, "next").expect("a next link");
    assert!(
        next.starts_with("/items?q=plain&per_page=2&after=") && next.ends_with("&page=2"),
        "{next}"
    );
    let (_, html) = get_text(&shop.url("/items?q=nothing-like-this")).await;
    assert!(html.contains("No items match"));

    let response = http.get(shop.url("/items?page=abc")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("page must be a whole number"));
}

async fn edit_and_delete_pages(backend: Backend) {
    let (_db, shop) = start(backend);
    let http = client();
    let seller = Seller::sign_up(&shop.url, "ann").await;
    let fields = [
        ("name", "Old name"),
        ("quantity", "1"),
        ("description", "Old text"),
    ];
    assert_eq!(
        seller
            .post(&shop.url("/"), &shop.url("/"), &fields)
            .await
            .status(),
        303
    );

    let session = seller.open_form(&shop.url("/items/1/edit")).await;
    let html = seller
        .get(&shop.url("/items/1/edit"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("value=\"Old name\"") && html.contains(">Old text</textarea>"),
        "edit form filled in"
    );
    let response = post_form(
        &http,
        &shop.url("/items/1"),
        &session,
        &[
            ("name", "New name"),
            ("quantity", "5"),
            ("description", "New text"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/items/1");
    let (status, html) = get_text(&shop.url("/items/1")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<h1>New name</h1>")
            && html.contains("<dd class=\"stock\">5</dd>")
            && html.contains("<dd>New text</dd>"),
        "{html}"
    );

    let response = post_form(
        &http,
        &shop.url("/items/1"),
        &session,
        &[("name", ""), ("quantity", "5"), ("description", "x")],
    )
    .await;
    assert_eq!(response.status(), 422, "a bad edit is shown again");
    assert!(
        get_text(&shop.url("/items/1"))
            .await
            .1
            .contains("<h1>New name</h1>"),
        "and changes nothing"
    );

    // A cross-site form: without the session it is sent to log in; with the browser's
    // cookies but no token of this page, it is refused.
    assert_eq!(
        post_form(
            &http,
            &shop.url("/items/1/delete"),
            &FormSessionless::none(),
            &[]
        )
        .await
        .status(),
        303
    );
    let mut forged = FormSessionless::none();
    forged.cookie = session.cookie.clone();
    assert_eq!(
        post_form(&http, &shop.url("/items/1/delete"), &forged, &[])
            .await
            .status(),
        403
    );
    // Deleting asks first, on a page of its own whose form posts the delete.
    let confirm = seller.open_form(&shop.url("/items/1/delete")).await;
    let page = seller
        .get(&shop.url("/items/1/delete"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<h1>Delete “New name”?</h1>")
            && page.contains("<form method=\"post\" action=\"/items/1/delete\"")
            && page.contains("<a href=\"/items/1\" class=\"button\">Keep it</a>"),
        "{page}"
    );
    assert_eq!(
        get_text(&shop.url("/items/1")).await.0,
        200,
        "asking deletes nothing"
    );
    let response = post_form(&http, &shop.url("/items/1/delete"), &confirm, &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/items");
    assert_eq!(get_text(&shop.url("/items/1")).await.0, 404);
    assert_eq!(
        post_form(&http, &shop.url("/items/1/delete"), &session, &[])
            .await
            .status(),
        404
    );
}

/// A "session" with no cookie and no token: what a cross-site form would send.
struct FormSessionless;
impl FormSessionless {
    fn none() -> common::FormSession {
        common::FormSession {
            cookie: "x=y".into(),
            token: String::new(),
            idempotency_key: String::new(),
        }
    }
}

async fn json_api(backend: Backend) {
    let (_db, shop) = start(backend);
    let http = common::api_client(&shop).await;
    let response = http
        .post(shop.url("/api/items"))
        .json(&json!({"name": "Kettle", "quantity": 2, "description": "Blue"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/items/{}", created["id"]));
    assert_eq!(
        (
            created["name"].as_str(),
            created["quantity"].as_i64(),
            created["description"].as_str()
        ),
        (Some("Kettle"), Some(2), Some("Blue"))
    );
    let added =
        chrono::DateTime::parse_from_rfc3339(created["date_added"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - added.to_utc()).num_seconds().abs() < 60,
        "date set by the server"
    );

    let fetched: Value = common::json_of(http.get(shop.url(&location))).await;
    assert_eq!(fetched, created);

    let response = http
        .put(shop.url(&location))
        .json(&json!({"name": "Kettle", "quantity": 0, "description": "Sold out"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(
        (updated["quantity"].as_i64(), updated["date_added"].clone()),
        (Some(0), created["date_added"].clone())
    );

    let response = http
        .post(shop.url("/api/items"))
        .json(&json!({"name": "", "quantity": "many", "description": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let errors: Value = response.json().await.unwrap();
    assert_eq!(errors["fields"]["name"], "Please enter a name.");
    assert_eq!(
        errors["fields"]["description"],
        "The description must be a string."
    );
    assert!(errors["fields"]["quantity"]
        .as_str()
        .unwrap()
        .contains("whole number"));

    let response = http
        .post(shop.url("/api/items"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("JSON"), "{error}");
    let response = http
        .post(shop.url("/api/items"))
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    assert_eq!(
        common::status_of(http.delete(shop.url(&location))).await,
        204
    );
    let response = http.get(shop.url(&location)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "There is no such item.");
    assert_eq!(
        common::status_of(http.delete(shop.url(&location))).await,
        404
    );
    assert_eq!(
        common::status_of(
            http.put(shop.url("/api/items/999"))
                .json(&json!({"name": "a", "quantity": 1, "description": "b"}))
        )
        .await,
        404
    );
}

async fn errors_are_pages_with_a_request_id(backend: Backend) {
    let (_db, shop) = start(backend);
    let http = common::api_client(&shop).await;
    for path in ["/no/such/page", "/items/999", "/items/abc"] {
        let response = http.get(shop.url(path)).send().await.unwrap();
        let (status, id, html) = common::answer_parts(response).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            html.contains("<h1>404 · Not Found</h1>") && html.contains(&id),
            "{path}: {html}"
        );
    }
    // A form page asks who is asking first (anonymous visitors log in), then for the item.
    let response = http.get(shop.url("/items/-1/edit")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/login?next=%2Fitems%2F-1%2Fedit"
    );
    let seller = common::Seller::sign_up(&shop.url, &common::fresh_username()).await;
    let response = seller.get(&shop.url("/items/-1/edit")).await;
    let (status, id, html) = common::answer_parts(response).await;
    assert_eq!(status, 404);
    assert!(
        html.contains("<h1>404 · Not Found</h1>") && html.contains(&id),
        "{html}"
    );
    let response = http.get(shop.url("/api/nothing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.json::<Value>().await.unwrap()["request_id"].is_string());
    assert_eq!(
        common::status_of(http.delete(shop.url("/items"))).await,
        405
    );

    // Bodies over 16 KiB: 413, from the form and from the API, with nothing stored.
    let session = open_form(&http, &shop.url("/")).await;
    let big = "x".repeat(17 * 1024);
    let response = post_form(
        &http,
        &shop.url("/"),
        &session,
        &[("name", "a"), ("quantity", "1"), ("description", &big)],
    )
    .await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("too large"));
    let response = http
        .post(shop.url("/api/items"))
        .json(&json!({"name": big, "quantity": 1, "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let items: Value = common::json_of(http.get(shop.url("/api/items"))).await;
    assert_eq!(items["items"], json!([]));

    // Every answer carries the security headers: pages, the API, errors, the stylesheet.
    let stylesheet = {
        let (_, form) = common::get_text(&shop.url("/items")).await;
        let at = form.find("/static/").expect("the stylesheet's link");
        form[at..].split('"').next().unwrap().to_owned()
    };
    for path in [
        "/items",
        "/items/999999",
        "/api/items",
        "/healthz",
        "/login",
        "/nowhere",
        &stylesheet,
    ] {
        let response = http.get(shop.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
    }

    // The proxy's request id is used; the instance says who it is.
    let response = http
        .get(shop.url("/healthz"))
        .header("x-request-id", "from-nginx-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "from-nginx-42");
    assert_eq!(
        response.headers()["x-shop-instance"],
        shop.port.to_string().as_str()
    );
    let ready: Value = common::json_of(http.get(shop.url("/readyz"))).await;
    assert_eq!(ready["status"], "ready");
    let logs = shop.logs();
    assert!(
        logs.lines().any(|l| l.contains("request_id=from-nginx-42")
            && l.contains("method=GET")
            && l.contains("path=/healthz")
            && l.contains("status=200")
            && l.contains("latency_ms=")),
        "one log line per request with its fields:\n{logs}"
    );
}

async fn redirects_ignore_the_host_header(backend: Backend) {
    let (_db, shop) = start(backend);
    let http = client();
    let session = open_form(&http, &shop.url("/")).await;
    let response = http
        .post(shop.url("/"))
        .header("cookie", &session.cookie)
        .header("host", "localhost,localhost:8080")
        .form(&[
            ("csrf_token", session.token.as_str()),
            ("name", "a"),
            ("quantity", "1"),
            ("description", "b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/items");
}

/// The form cookie is `Secure` when the browser came over HTTPS, as nginx on this host
/// (a trusted proxy: 127.0.0.1 by default) says with X-Forwarded-Proto, and only then.
/// (That an untrusted address cannot say so is tests in src/web/forwarded.rs, and over a
/// real network in tests/several_hosts.rs.)
#[tokio::test]
async fn the_form_cookie_is_secure_when_the_proxy_says_https() {
    let (_db, shop) = start(Backend::Sqlite);
    let cookie_for = |proto: Option<&'static str>| {
        let mut request = client().get(shop.url("/login"));
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        async move {
            let response = request.send().await.unwrap();
            response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let over_https = cookie_for(Some("https")).await;
    assert!(
        over_https.ends_with("; HttpOnly; SameSite=Lax; Secure"),
        "{over_https}"
    );
    for plain in [cookie_for(Some("http")).await, cookie_for(None).await] {
        assert!(!plain.contains("Secure"), "{plain}");
        assert!(plain.ends_with("; HttpOnly; SameSite=Lax"), "{plain}");
    }
}

async fn a_repeated_post_creates_one_item(backend: Backend) {
    let (_db, shop) = start(backend);
    let http = common::api_client(&shop).await;
    let session = open_form(&http, &shop.url("/")).await;
    let (cookie, token, key) = (session.cookie, session.token, session.idempotency_key);
    assert_eq!(key.len(), 32, "every new-item form carries a key");
    let body = [
        ("csrf_token", token.as_str()),
        ("idempotency_key", key.as_str()),
        ("name", "Once"),
        ("quantity", "1"),
        ("description", "only once"),
    ];

    // The same submission, ten times at once (a double click, a retry through nginx).
    let posts = (0..10).map(|_| {
        let request = http
            .post(shop.url("/"))
            .header("cookie", &cookie)
            .form(&body);
        async move { request.send().await.unwrap() }
    });
    for response in futures_join_all(posts).await {
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/items");
    }
    let items: Value = common::json_of(http.get(shop.url("/api/items?q=Once"))).await;
    assert_eq!(items["items"].as_array().unwrap().len(), 1, "{items}");

    // A bad form keeps its key, so correcting and resending it is still one item.
    let bad = [
        ("csrf_token", token.as_str()),
        ("idempotency_key", "fixedkey-0001"),
        ("name", ""),
        ("quantity", "1"),
        ("description", "x"),
    ];
    let html = http
        .post(shop.url("/"))
        .header("cookie", &cookie)
        .form(&bad)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        common::hidden_field(&html, "idempotency_key"),
        "fixedkey-0001"
    );
    let bad_key = [
        ("csrf_token", token.as_str()),
        ("idempotency_key", "no spaces allowed"),
        ("name", "a"),
        ("quantity", "1"),
        ("description", "x"),
    ];
    assert_eq!(
        common::status_of(
            http.post(shop.url("/"))
                .header("cookie", &cookie)
                .form(&bad_key)
        )
        .await,
        400
    );

    // The API: the same Idempotency-Key returns the same item.
    let create = || {
        http.post(shop.url("/api/items"))
            .header("idempotency-key", "api-key-123456")
            .json(&json!({"name": "Api once", "quantity": 2, "description": "d"}))
    };
    let first = create().send().await.unwrap();
    assert_eq!(
        (
            first.status().as_u16(),
            first.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (201, "false")
    );
    let first: Value = first.json().await.unwrap();
    let again = create().send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let response = http
        .post(shop.url("/api/items"))
        .header("idempotency-key", "x")
        .json(&json!({"name": "a", "quantity": 2, "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

both_backends!(
    keyset_links_walk_the_whole_list,
    a_repeated_post_creates_one_item,
    create_then_list_shows_every_field,
    bad_form_keeps_input_and_explains,
    csrf_is_required_and_shared_between_instances,
    output_is_escaped,
    pagination_and_search,
    edit_and_delete_pages,
    json_api,
    errors_are_pages_with_a_request_id,
    redirects_ignore_the_host_header,
);
