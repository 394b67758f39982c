//! Accounts under attack, against the real binary on PostgreSQL and on SQLite: guesses
//! sent at once from many addresses and to two instances, the current password guessed
//! through a stolen session, tokens that outlive the password, a known device that
//! passes a lockout, cookies planted for the host and requests from other sites over
//! HTTPS, names that would forge log lines, and what a cache may keep of each page.

use crate::common;

use std::time::Duration;

use common::{client, said, set_cookie, Backend, FormSession, Seller, Shop, TestDb, PASSWORD};
use serde_json::json;

/// The failed-check limit of the shops here (the default, said once).
const LIMIT: usize = 10;

/// POST the login form from `address` (as the trusted local proxy tells it), with the
/// extra cookie `device` (a device cookie, or nothing).
async fn login_from(
    shop: &Shop,
    form: &FormSession,
    name: &str,
    password: &str,
    address: &str,
    device: &str,
) -> reqwest::Response {
    client()
        .post(shop.url("/login"))
        .header("cookie", format!("{}; {device}", form.cookie))
        .header("x-forwarded-for", address)
        .form(&[
            ("csrf_token", form.token.as_str()),
            ("username", name),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// The journal lines (stderr here) of both instances with this event.
fn events(shops: &[&Shop], event: &str) -> usize {
    let needle = format!("event=\"{event}\"");
    shops
        .iter()
        .map(|s| s.logs().lines().filter(|l| l.contains(&needle)).count())
        .sum()
}

async fn concurrent_guesses_are_counted_before_they_are_checked(backend: Backend) {
    let db = TestDb::new(backend);
    let (one, two) = (Shop::start(&db.url, &[]), Shop::start(&db.url, &[]));
    Seller::sign_up(&one.url, "ann").await;
    let form = common::open_form(&client(), &one.url("/login")).await;

    // 40 wrong passwords for one account, at once, from 40 addresses, half to each
    // instance: at most the limit are checked (401), the rest are refused unchecked.
    let guesses: Vec<_> = (0..40)
        .map(|n| {
            let shop = if n % 2 == 0 { &one } else { &two };
            let (url, form) = (shop.url("/login"), form.clone());
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("cookie", &form.cookie)
                    .header("x-forwarded-for", format!("198.51.100.{}", n + 1))
                    .form(&[
                        ("csrf_token", form.token.as_str()),
                        ("username", "ann"),
                        ("password", &format!("wrong guess number {n}")),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }
    eprintln!("40 concurrent guesses on two instances: {statuses:?}");
    let (checked, busy, refused) = (
        count(&statuses, 401),
        count(&statuses, 503),
        count(&statuses, 429),
    );
    assert_eq!(
        checked + busy + refused,
        40,
        "401, 503 or 429 only: {statuses:?}"
    );
    assert!(
        checked + busy <= LIMIT,
        "at most {LIMIT} guesses get past the count: {statuses:?}"
    );
    // (Each instance's stderr is read as a file: on a loaded machine a line may still be
    // on its way when the last answer arrives, so the count may take a moment to settle.)
    common::poll_until(std::time::Duration::from_secs(3), || {
        events(&[&one, &two], "login_failed") == checked
    });
    assert_eq!(
        events(&[&one, &two], "login_failed"),
        checked,
        "each checked guess is a failure in the journal, and only those"
    );
    // What was refused unchecked is no failure: one at a time, the guesses checked reach
    // the limit exactly, and then even the right password waits.
    for n in checked..LIMIT {
        let guess = login_from(
            &two,
            &form,
            "ann",
            "one more guess",
            &format!("198.51.100.{}", 100 + n),
            "",
        )
        .await;
        assert_eq!(guess.status(), 401, "guess {} of {LIMIT}", n + 1);
    }
    let after = login_from(&one, &form, "ann", PASSWORD, "198.51.100.200", "").await;
    assert_eq!(after.status(), 429);
}

/// A signed-in browser's POST of the change-password form.
async fn change_password(shop: &Shop, seller: &Seller, current: &str, new: &str) -> u16 {
    let form = seller.open_form(&shop.url("/account")).await;
    common::post_form(
        &client(),
        &shop.url("/account/password"),
        &form,
        &[("current_password", current), ("new_password", new)],
    )
    .await
    .status()
    .as_u16()
}

async fn the_current_password_is_throttled_like_a_login(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    let stolen = Seller::sign_up(&shop.url, "ann").await;
    let mut statuses = Vec::new();
    for n in 0..LIMIT + 3 {
        statuses.push(
            change_password(
                &shop,
                &stolen,
                &format!("guess {n} of many"),
                "a brand new passphrase",
            )
            .await,
        );
    }
    assert_eq!(
        statuses,
        [vec![422; LIMIT], vec![429; 3]].concat(),
        "wrong current passwords count as failed logins"
    );
    // The right one waits too, now, and so does a login for the account.
    assert_eq!(
        change_password(&shop, &stolen, PASSWORD, "a brand new passphrase").await,
        429
    );
    let form = common::open_form(&client(), &shop.url("/login")).await;
    let login = login_from(&shop, &form, "ann", PASSWORD, "203.0.113.50", "").await;
    assert_eq!(login.status(), 429, "the same count as logins");
    assert!(events(&[&shop], "login_failed") >= LIMIT);
}

/// `Authorization: Bearer` `token` creates an item: its status.
async fn create_with(shop: &Shop, token: &str) -> u16 {
    client()
        .post(shop.url("/api/items"))
        .bearer_auth(token)
        .json(&json!({"name": "Tokened", "quantity": 1, "description": "by API"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn tokens_end_with_the_password_and_with_signing_out_everywhere(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    let ann = Seller::sign_up(&shop.url, "ann").await;

    // Making a token asks for the password.
    let without = ann
        .post(
            &shop.url("/account"),
            &shop.url("/account/tokens"),
            &[("name", "stolen session")],
        )
        .await;
    assert_eq!(without.status(), 422);
    assert!(without
        .text()
        .await
        .unwrap()
        .contains("Enter your password to make a token"));
    let account = ann.get(&shop.url("/account")).await.text().await.unwrap();
    assert!(account.contains("No API tokens yet."), "none was made");

    // A password change revokes the tokens (and says so).
    let token = ann.api_token(&shop.url).await;
    assert_eq!(create_with(&shop, &token).await, 201);
    let account = ann.get(&shop.url("/account")).await.text().await.unwrap();
    assert!(
        account.contains("<th>Expires</th>"),
        "the page shows each token's expiry"
    );
    let new_password = "marigold ferry at dusk";
    assert_eq!(
        change_password(&shop, &ann, PASSWORD, new_password).await,
        303
    );
    assert_eq!(
        create_with(&shop, &token).await,
        401,
        "revoked by the password change"
    );
    let page = ann
        .get(&shop.url("/account?done=password"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("your API tokens were revoked"), "{page}");

    // So does "sign out everywhere else"; a logout does not (a person's scripts go on).
    let ann = Seller::log_in(&shop.url, "ann", new_password)
        .await
        .unwrap();
    let token = ann.api_token_with(&shop.url, new_password).await;
    let ended = ann
        .post(
            &shop.url("/account"),
            &shop.url("/account/sessions/end-others"),
            &[],
        )
        .await;
    assert_eq!(ended.status(), 303);
    assert_eq!(
        create_with(&shop, &token).await,
        401,
        "revoked by signing out everywhere"
    );
    let token = ann.api_token_with(&shop.url, new_password).await;
    let logout = ann
        .post(&shop.url("/account"), &shop.url("/logout"), &[])
        .await;
    assert_eq!(logout.status(), 303);
    assert_eq!(
        create_with(&shop, &token).await,
        201,
        "a logout leaves tokens working"
    );

    // And so does `shop user password` on the command line.
    let out = db.shop(&["user", "password", "ann"], "an admin set this one\n");
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("1 API token(s) revoked"),
        "{}",
        said(&out)
    );
    assert_eq!(
        create_with(&shop, &token).await,
        401,
        "revoked from the command line"
    );

    // Tokens expire: by the setting, or as `--expires` says.
    let brief = Shop::start(&db.url, &[("SHOP_ACCOUNTS__TOKEN_LIFETIME_SECS", "2")]);
    let ann = Seller::log_in(&brief.url, "ann", "an admin set this one")
        .await
        .unwrap();
    let short = ann
        .api_token_with(&brief.url, "an admin set this one")
        .await;
    assert_eq!(create_with(&brief, &short).await, 201);
    std::thread::sleep(Duration::from_secs(3));
    let expired = client()
        .post(brief.url("/api/items"))
        .bearer_auth(&short)
        .json(&json!({"name": "Late", "quantity": 1, "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.unwrap().contains("has expired"));
    let out = db.shop(
        &[
            "token",
            "create",
            "ann",
            "--name",
            "cron",
            "--expires",
            "never",
        ],
        "",
    );
    assert!(out.status.success(), "{}", said(&out));
    let forever = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(create_with(&brief, &forever).await, 201);
    let out = db.shop(
        &["token", "create", "ann", "--name", "x", "--expires", "0"],
        "",
    );
    assert!(
        !out.status.success() && said(&out).contains("not a lifetime"),
        "{}",
        said(&out)
    );
    let out = db.shop(
        &[
            "token",
            "create",
            "ann",
            "--name",
            "weekly",
            "--expires",
            "7d",
        ],
        "",
    );
    assert!(out.status.success(), "{}", said(&out));
    let listed = said(&db.shop(&["token", "list", "ann"], ""));
    assert!(
        listed
            .lines()
            .any(|l| l.contains("cron") && l.trim_end().ends_with("never")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("weekly") && l.trim_end().ends_with("UTC")),
        "{listed}"
    );
}

async fn a_flood_of_guesses_does_not_lock_the_owner_out_of_their_browser(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    // Ann signs up: her browser becomes a known device of her account.
    let form = common::open_form(&client(), &shop.url("/signup")).await;
    let signed_up = common::post_form(
        &client(),
        &shop.url("/signup"),
        &form,
        &[("username", "ann"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed_up.status(), 303);
    let device = set_cookie(&signed_up, "shop_device").expect("a device cookie");
    let device_set = signed_up
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("shop_device="))
        .unwrap();
    assert!(
        device_set.contains("HttpOnly") && device_set.contains("Max-Age=31536000"),
        "{device_set}"
    );
    Seller::sign_up(&shop.url, "bob").await;

    // Ten wrong guesses from ten addresses: strangers wait, even with the right password.
    let login = common::open_form(&client(), &shop.url("/login")).await;
    for n in 1..=LIMIT {
        let guess = login_from(
            &shop,
            &login,
            "ann",
            "wrong guess",
            &format!("192.0.2.{n}"),
            "",
        )
        .await;
        assert_eq!(guess.status(), 401);
    }
    let stranger = login_from(&shop, &login, "ann", PASSWORD, "192.0.2.99", "").await;
    assert_eq!(stranger.status(), 429);
    // Bob's device is no device of Ann's, nor is a forged one.
    let bob_device = {
        let form = common::open_form(&client(), &shop.url("/login")).await;
        let response = login_from(&shop, &form, "bob", PASSWORD, "192.0.2.150", "").await;
        set_cookie(&response, "shop_device").expect("bob's device cookie")
    };
    let forged = format!("shop_device={}.{}", "a".repeat(64), "b".repeat(64));
    for other in [bob_device.as_str(), forged.as_str()] {
        let response = login_from(&shop, &login, "ann", PASSWORD, "192.0.2.98", other).await;
        assert_eq!(response.status(), 429, "{other}");
    }
    // Her own browser, from a fresh address, signs in.
    let owner = login_from(&shop, &login, "ann", PASSWORD, "192.0.2.97", &device).await;
    assert_eq!(
        owner.status(),
        303,
        "the owner's known device passes the lockout"
    );

    // The device is counted on its own: ten wrong guesses with it, and it waits too.
    let login = common::open_form(&client(), &shop.url("/login")).await;
    for n in 0..LIMIT {
        let guess = login_from(
            &shop,
            &login,
            "ann",
            "wrong again",
            &format!("192.0.2.{}", 200 + n),
            &device,
        )
        .await;
        assert_eq!(guess.status(), 401);
    }
    let response = login_from(&shop, &login, "ann", PASSWORD, "192.0.2.250", &device).await;
    assert_eq!(
        response.status(),
        429,
        "a stolen device cookie is worth {LIMIT} guesses"
    );
}

async fn an_ipv6_client_is_counted_by_its_64(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    let login = common::open_form(&client(), &shop.url("/login")).await;
    for n in 0..LIMIT {
        let address = format!("2001:db8:1:2:{n:x}::{}", n + 1);
        let guess = login_from(
            &shop,
            &login,
            &format!("guess{n}"),
            "wrong guess",
            &address,
            "",
        )
        .await;
        assert_eq!(guess.status(), 401);
    }
    let same_64 = login_from(
        &shop,
        &login,
        "someone",
        "wrong guess",
        "2001:db8:1:2:ffff::1",
        "",
    )
    .await;
    assert_eq!(same_64.status(), 429, "the same /64 waits");
    let other_64 = login_from(
        &shop,
        &login,
        "someone",
        "wrong guess",
        "2001:db8:1:3::1",
        "",
    )
    .await;
    assert_eq!(other_64.status(), 401, "the next /64 does not");
}

/// A request that came over HTTPS (as the trusted local proxy says) with `cookie`.
fn over_https(request: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    request
        .header("x-forwarded-proto", "https")
        .header("cookie", cookie)
}

/// Sign up over HTTPS: the browser's cookies (`__Host-shop_csrf`, `__Host-shop_session`).
async fn https_sign_up(shop: &Shop, name: &str) -> String {
    let form = common::https_form(&shop.url("/signup")).await;
    let response = over_https(client().post(shop.url("/signup")), &form.cookie)
        .form(&[
            ("csrf_token", form.token.as_str()),
            ("username", name),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{name} signed up over HTTPS");
    let session = set_cookie(&response, "__Host-shop_session").unwrap();
    format!("{}; {session}", form.cookie)
}

/// The name the page's header shows as signed in ("" for nobody).
async fn who_is_shown(shop: &Shop, cookie: &str) -> String {
    let html = over_https(client().get(shop.url("/items")), cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    ["alice", "bob"]
        .into_iter()
        .find(|name| {
            html.contains(&format!("Your account: {name}")) || html.contains(&format!(">{name}<"))
        })
        .unwrap_or_default()
        .to_owned()
}

/// The form token `cookie`'s browser gets on `page` over HTTPS.
async fn https_token(shop: &Shop, page: &str, cookie: &str) -> String {
    let html = over_https(client().get(shop.url(page)), cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::hidden_field(&html, "csrf_token")
}

async fn over_https_only_host_cookies_count_and_other_sites_are_refused(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    let alice = https_sign_up(&shop, "alice").await;
    let bob = https_sign_up(&shop, "bob").await;
    let id_of = |cookies: &str| {
        cookies
            .split("; ")
            .find_map(|c| c.strip_prefix("__Host-shop_session="))
            .unwrap()
            .to_owned()
    };
    assert_eq!(who_is_shown(&shop, &bob).await, "bob");

    // A plain shop_session (planted from a sibling subdomain, or over HTTP) is not read
    // over HTTPS, first or alone.
    let planted = format!(
        "shop_session={}; __Host-shop_session={}",
        id_of(&alice),
        id_of(&bob)
    );
    assert_eq!(
        who_is_shown(&shop, &planted).await,
        "bob",
        "the __Host- one counts"
    );
    let plain_only = format!("shop_session={}", id_of(&alice));
    assert_eq!(
        who_is_shown(&shop, &plain_only).await,
        "",
        "a plain one is ignored"
    );

    // A login CSRF: a plain shop_csrf and its token (any HTTP page hands both out),
    // planted, with another site's Origin; refused, and so without the Origin (the plain
    // cookie is not read over HTTPS).
    let planted = common::open_form(&client(), &shop.url("/login")).await;
    for origin in [Some("https://evil.example"), None] {
        let mut request = over_https(client().post(shop.url("/login")), &planted.cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request
            .form(&[
                ("csrf_token", planted.token.as_str()),
                ("username", "alice"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            403,
            "planted login with Origin {origin:?}"
        );
        assert!(set_cookie(&response, "__Host-shop_session").is_none());
    }

    // Every form, posted with bob's own good cookies and token but from another site:
    // 403 before anything is read, and nothing changed.
    let item = common::create_item(
        &shop,
        &json!({"name": "Bob's lamp", "quantity": 1, "description": "d"}),
    )
    .await;
    let item_id = item["id"].as_i64().unwrap();
    let token = https_token(&shop, "/account", &bob).await;
    let forms = [
        "/signup".to_owned(),
        "/login".to_owned(),
        "/logout".to_owned(),
        "/".to_owned(),
        format!("/items/{item_id}"),
        format!("/items/{item_id}/delete"),
        "/account/password".to_owned(),
        "/account/tokens".to_owned(),
        "/account/tokens/1/revoke".to_owned(),
        "/account/sessions/end-others".to_owned(),
        "/account/users/disable".to_owned(),
    ];
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("origin", "http://127.0.0.1"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        for form in &forms {
            let response = over_https(client().post(shop.url(form)), &bob)
                .header(header, value)
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("username", "bob"),
                    ("password", PASSWORD),
                    ("current_password", PASSWORD),
                    ("new_password", "a takeover phrase here"),
                    ("name", "Taken"),
                    ("quantity", "1"),
                    ("description", "d"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "POST {form} with {header}: {value}");
            assert!(response
                .text()
                .await
                .unwrap()
                .contains("came from another site"));
        }
    }
    assert_eq!(
        who_is_shown(&shop, &bob).await,
        "bob",
        "bob is still signed in"
    );
    let still = client()
        .get(shop.url(&format!("/api/items/{item_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "the item is still there");

    // The site's own page still works: the same form with this site's Origin.
    let port_origin = format!("https://127.0.0.1:{}", shop.port);
    let response = over_https(
        client().post(shop.url("/account/sessions/end-others")),
        &bob,
    )
    .header("origin", &port_origin)
    .header("sec-fetch-site", "same-origin")
    .form(&[("csrf_token", token.as_str())])
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 303, "a same-origin form works");

    // The API: a Bearer token is no ambient credential, and is not refused; a session
    // cookie with its X-CSRF-Token is, from another site.
    let bearer = common::api_token(&shop).await;
    let response = client()
        .post(shop.url("/api/items"))
        .header("origin", "https://evil.example")
        .bearer_auth(&bearer)
        .json(&json!({"name": "Scripted", "quantity": 2, "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        201,
        "the API with a Bearer token is unaffected"
    );
    let token = https_token(&shop, "/", &bob).await;
    let response = over_https(client().post(shop.url("/api/items")), &bob)
        .header("origin", "https://evil.example")
        .header("x-csrf-token", &token)
        .json(&json!({"name": "Ridden", "quantity": 2, "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

async fn typed_names_reach_the_logs_only_when_they_are_users(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    Seller::sign_up(&shop.url, "ann").await;
    let login = common::open_form(&client(), &shop.url("/login")).await;
    let forged = "mallory\nINFO request: event=\"login\" user=admin forged";
    let password_like = "Tr0ub4dor-and-3-horses";
    for name in [forged, password_like] {
        let response = login_from(&shop, &login, name, "some guess", "198.51.100.9", "").await;
        assert_eq!(response.status(), 401);
    }
    let wrong = login_from(&shop, &login, "ann", "some guess", "198.51.100.9", "").await;
    assert_eq!(wrong.status(), 401);
    let logs = shop.logs();
    for raw in ["mallory", "forged", password_like, "some guess"] {
        assert!(!logs.contains(raw), "{raw:?} reached the log:\n{logs}");
    }
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("event=\"login_failed\"") && l.contains("user=(unknown)"))
            .count(),
        2,
        "an unknown name is logged as such:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("event=\"login_failed\"") && l.contains("user=ann")),
        "a user's name is:\n{logs}"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.trim_start().starts_with("INFO request: event")),
        "no forged line"
    );
}

/// The `Cache-Control` and `Vary` of a response, and whether it sets a cookie.
fn caching(response: &reqwest::Response) -> (String, String, bool) {
    let header = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    (
        header("cache-control"),
        header("vary"),
        response.headers().contains_key("set-cookie"),
    )
}

async fn no_cache_keeps_account_pages_or_hands_out_a_cookie(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    let ann = Seller::sign_up(&shop.url, "ann").await;
    let token = ann.api_token(&shop.url).await;
    let item: serde_json::Value = client()
        .post(shop.url("/api/items"))
        .bearer_auth(&token)
        .json(&json!({"name": "Lamp", "quantity": 1, "description": "d"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = item["id"].as_i64().unwrap();

    // Anonymous: the list is shared, and hands out no cookie (it has no form); the login
    // page hands out the CSRF cookie, and nobody keeps it.
    let first = client().get(shop.url("/items")).send().await.unwrap();
    assert_eq!(caching(&first), ("no-cache".into(), "Cookie".into(), false));
    let login_page = client().get(shop.url("/login")).send().await.unwrap();
    assert_eq!(
        caching(&login_page),
        ("no-store".into(), "Cookie".into(), true)
    );
    let cookie = set_cookie(&login_page, "shop_csrf").unwrap();
    let again = client()
        .get(shop.url("/items"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(caching(&again), ("no-cache".into(), "Cookie".into(), false));
    for page in ["/login", "/signup"] {
        let response = client()
            .get(shop.url(page))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(caching(&response).0, "no-store", "{page}");
        assert_eq!(caching(&response).1, "Cookie", "{page}");
    }
    // Signed in: every page that shows or takes account data is never stored.
    for page in [
        "/account".to_owned(),
        "/".to_owned(),
        format!("/items/{id}/edit"),
        format!("/items/{id}/delete"),
    ] {
        let response = ann.get(&shop.url(&page)).await;
        assert_eq!(response.status(), 200, "{page}");
        assert_eq!(caching(&response).0, "no-store", "{page}");
        assert!(caching(&response).1.contains("Cookie"), "{page}");
    }
    for page in ["/items".to_owned(), format!("/items/{id}")] {
        let response = ann.get(&shop.url(&page)).await;
        assert_eq!(caching(&response).0, "private, no-cache", "{page}");
        assert!(caching(&response).1.contains("Cookie"), "{page}");
    }
    // A failed login's page (it holds what was typed) and a signed-in visitor's error page.
    let login = common::open_form(&client(), &shop.url("/login")).await;
    let failed = login_from(&shop, &login, "ann", "wrong", "198.51.100.3", "").await;
    assert_eq!(caching(&failed).0, "no-store");
    let missing = ann.get(&shop.url("/items/999999")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(caching(&missing).0, "private, no-cache");
    assert!(caching(&missing).1.contains("Cookie"));
    // On the private side, the instance still names itself.
    assert!(missing.headers().contains_key("x-shop-instance"));
}

both_backends!(
    concurrent_guesses_are_counted_before_they_are_checked,
    the_current_password_is_throttled_like_a_login,
    tokens_end_with_the_password_and_with_signing_out_everywhere,
    a_flood_of_guesses_does_not_lock_the_owner_out_of_their_browser,
    an_ipv6_client_is_counted_by_its_64,
    over_https_only_host_cookies_count_and_other_sites_are_refused,
    typed_names_reach_the_logs_only_when_they_are_users,
    no_cache_keeps_account_pages_or_hands_out_a_cookie,
);
