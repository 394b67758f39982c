//! Accounts against the real binary, on PostgreSQL and on SQLite: sign-up, login and
//! logout; sessions across instances; who may change which item (forms and API); admins
//! and disabled users; API tokens; guessing; and what the database and the logs keep.

use crate::common;

use std::time::Instant;

use common::{client, said, set_cookie, Backend, Seller, Shop, TestDb, PASSWORD};
use serde_json::{json, Value};

fn start(backend: Backend) -> (TestDb, Shop) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    (db, shop)
}

/// The session cookie (`shop_session=…`) of a seller's cookie string.
fn session_of(seller: &Seller) -> String {
    seller
        .cookie
        .split("; ")
        .find(|c| c.starts_with("shop_session="))
        .unwrap()
        .to_owned()
}

/// The text of the page's alert (the login form's one message).
fn alert(html: &str) -> String {
    let start = html.find("role=\"alert\">").expect("an alert") + 13;
    html[start..].split('<').next().unwrap().to_owned()
}

async fn sign_up_log_in_create_log_out(backend: Backend) {
    let (db, shop) = start(backend);
    let other_instance = Shop::start(&db.url, &[]);

    // Anonymous: the add-an-item form sends to the login page, which comes back.
    let anonymous = client().get(shop.url("/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/login?next=%2F");

    let ann = Seller::sign_up(&shop.url, "Ann").await;
    let page = ann.get(&shop.url("/items")).await.text().await.unwrap();
    assert!(
        page.contains("Signed in as <a href=\"/account\" class=\"viewer\">Ann</a>"),
        "the header says who is signed in:\n{page}"
    );
    let fields = [
        ("name", "Lamp"),
        ("quantity", "1"),
        ("description", "brass"),
    ];
    let form = ann.post(&shop.url("/"), &shop.url("/"), &fields).await;
    assert_eq!(form.status(), 303);
    // (The request's line is written as its answer leaves, so it may come a moment
    // after the answer arrives.)
    let audited = || {
        shop.logs().lines().any(|l| {
            l.contains("event=\"item_created\"")
                && l.contains("user=\"Ann\"")
                && l.contains("item_id=")
                && l.contains("POST / 303")
        })
    };
    assert!(
        common::poll_until(std::time::Duration::from_secs(2), audited),
        "the request's own line says who created which item:\n{}",
        shop.logs()
    );

    // The session made on one instance is honoured by another.
    let there = ann.get(&other_instance.url("/")).await;
    assert_eq!(there.status(), 200, "signed in on the other instance too");
    let list = common::get_text(&other_instance.url("/items")).await.1;
    assert!(
        list.contains(">Lamp</a><td>1<td>not for sale<td>brass<td>Ann<td>"),
        "the seller is listed:\n{list}"
    );

    // Log out: the old cookie is worth nothing afterwards, on every instance.
    let logout = ann
        .post(&shop.url("/items"), &shop.url("/logout"), &[])
        .await;
    assert_eq!(logout.status(), 303);
    assert_eq!(
        logout.headers()["set-cookie"],
        "shop_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    );
    let old = ann.get(&shop.url("/")).await;
    assert_eq!(old.status(), 303, "the ended session no longer works");
    common::heard(
        "the other instance refuses the ended session",
        303,
        || async { ann.get(&other_instance.url("/")).await.status().as_u16() },
    )
    .await;

    // Log in again (with ?next=): a new session id, never the one the browser brought.
    let login = Seller::log_in(&shop.url, "ann", PASSWORD).await.unwrap();
    assert_ne!(
        session_of(&login),
        session_of(&ann),
        "a new session id at login"
    );
    let relogin = login.open_form(&shop.url("/login?next=/items/1")).await;
    let page = login
        .get(&shop.url("/login?next=/items/1"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        common::hidden_field(&page, "next").replace("&#x2F;", "/"),
        "/items/1"
    );
    let fields = [
        ("username", "ANN"),
        ("password", PASSWORD),
        ("next", "/items/1"),
    ];
    let response = common::post_form(&client(), &shop.url("/login"), &relogin, &fields).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/items/1",
        "back where they were going"
    );
    let renewed = set_cookie(&response, "shop_session").unwrap();
    assert_ne!(
        renewed,
        session_of(&login),
        "logging in while signed in renews the id"
    );
    assert_eq!(
        login.get(&shop.url("/")).await.status(),
        303,
        "and ends the old session"
    );
    let next = client()
        .get(shop.url("/login?next=https://evil.example/"))
        .send()
        .await
        .unwrap();
    let kept = common::hidden_field(&next.text().await.unwrap(), "next");
    assert_eq!(kept.replace("&#x2F;", "/"), "/", "next stays on this site");

    // Sign-up refuses what the rules refuse, and says why beside the field.
    let cases = [
        ("ann2", "x9q", "at least 8 characters"),
        ("ann3", "password1", "most common"),
        (
            "ann4",
            "ann4-is-my-password",
            "must not contain your username",
        ),
        ("ANN", PASSWORD, "This username is taken"),
        ("a b", PASSWORD, "letters (a–z)"),
    ];
    for (name, password, expected) in cases {
        let (status, html) = Seller::try_sign_up(&shop.url, name, password)
            .await
            .unwrap_err();
        assert_eq!(status, 422, "{name}/{password}");
        assert!(html.contains(expected), "{name}/{password}: {html}");
        assert!(
            html.contains(&format!("value=\"{}\"", name.trim())),
            "the username is kept"
        );
        assert!(!html.contains(password), "a password is never sent back");
    }
    assert_eq!(
        db.rows("SELECT count(*) FROM users").await,
        ["1"],
        "nothing half-made"
    );
}

async fn only_the_seller_or_an_admin_changes_an_item(backend: Backend) {
    let (db, shop) = start(backend);
    let ann = Seller::sign_up(&shop.url, "ann").await;
    let bob = Seller::sign_up(&shop.url, "bob").await;
    let ann_api = common::api_client_of(&ann, &shop.url).await;
    let bob_api = common::api_client_of(&bob, &shop.url).await;
    let item = json!({"name": "Kettle", "quantity": 2, "description": "blue"});
    let created: Value = ann_api
        .post(shop.url("/api/items"))
        .json(&item)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["seller"], "ann");
    let id = created["id"].as_i64().unwrap();
    let page = format!("/items/{id}");

    // Anonymous writes: the API says 401 with a Bearer challenge.
    let anonymous = client()
        .post(shop.url("/api/items"))
        .json(&item)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"shop\""
    );
    for request in [
        client()
            .put(shop.url(&format!("/api/items/{id}")))
            .json(&item),
        client().delete(shop.url(&format!("/api/items/{id}"))),
    ] {
        assert_eq!(common::status_of(request).await, 401);
    }
    let bad_token = client()
        .delete(shop.url(&format!("/api/items/{id}")))
        .bearer_auth(format!("shop_{}", "0".repeat(64)));
    assert_eq!(common::status_of(bad_token).await, 401);

    // Another seller: no buttons, and 403 from the form and the API, with words.
    let bobs_view = bob.get(&shop.url(&page)).await.text().await.unwrap();
    assert!(
        bobs_view.contains("<dd class=\"seller\">ann</dd>"),
        "{bobs_view}"
    );
    assert!(
        !bobs_view.contains("/edit") && !bobs_view.contains("/delete"),
        "no edit or delete for bob:\n{bobs_view}"
    );
    let anns_view = ann.get(&shop.url(&page)).await.text().await.unwrap();
    assert!(
        anns_view.contains(&format!("{page}/edit"))
            && anns_view.contains(&format!("{page}/delete"))
    );
    assert_eq!(
        bob.get(&shop.url(&format!("{page}/edit"))).await.status(),
        403
    );
    assert_eq!(
        bob.get(&shop.url(&format!("{page}/delete"))).await.status(),
        403,
        "nor may bob open the page that asks to confirm a delete"
    );
    let edit = bob
        .post(
            &shop.url("/items"),
            &shop.url(&page),
            &[("name", "Mine"), ("quantity", "1"), ("description", "x")],
        )
        .await;
    assert_eq!(edit.status(), 403);
    assert!(edit.text().await.unwrap().contains("another seller&#x27;s"));
    let delete = bob
        .post(
            &shop.url("/items"),
            &shop.url(&format!("{page}/delete")),
            &[],
        )
        .await;
    assert_eq!(delete.status(), 403);
    let put = bob_api
        .put(shop.url(&format!("/api/items/{id}")))
        .json(&json!({"name": "Mine", "quantity": 1, "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    let error: Value = put.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("only its seller (or an admin)"),
        "{error}"
    );
    assert_eq!(
        common::status_of(bob_api.delete(shop.url(&format!("/api/items/{id}")))).await,
        403
    );
    let kept: Value = common::json_of(client().get(shop.url(&format!("/api/items/{id}")))).await;
    assert_eq!(kept["name"], "Kettle", "nothing changed");

    // An item from before accounts (no seller): only an admin may change it.
    db.rows("INSERT INTO items (name, quantity, description, date_added) VALUES ('Old', 1, 'from before', '2025-01-01 00:00:00+00:00')").await;
    let old = db.rows("SELECT id FROM items WHERE name = 'Old'").await[0].clone();
    assert_eq!(
        common::status_of(ann_api.delete(shop.url(&format!("/api/items/{old}")))).await,
        403
    );
    let out = db.shop(
        &["user", "add", "boss", "--admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", said(&out));
    let boss = Seller::log_in(&shop.url, "boss", PASSWORD).await.unwrap();
    let boss_view = boss
        .get(&shop.url(&format!("/items/{old}")))
        .await
        .text()
        .await
        .unwrap();
    assert!(boss_view.contains("(from before accounts)") && boss_view.contains("/edit"));
    let edit = boss
        .post(
            &shop.url(&format!("/items/{old}/edit")),
            &shop.url(&format!("/items/{old}")),
            &[
                ("name", "Old, checked"),
                ("quantity", "1"),
                ("description", "by the admin"),
            ],
        )
        .await;
    assert_eq!(
        edit.status(),
        303,
        "an admin may change an item without a seller"
    );
    let boss_api = common::api_client_of(&boss, &shop.url).await;
    assert_eq!(
        common::status_of(
            boss_api
                .put(shop.url(&format!("/api/items/{id}")))
                .json(&json!({"name": "Kettle", "quantity": 1, "description": "fixed"}))
        )
        .await,
        200,
        "and anyone's"
    );

    // The seller may; the form keeps its rules for them too.
    let edit = ann
        .post(
            &shop.url(&format!("{page}/edit")),
            &shop.url(&page),
            &[
                ("name", "Kettle, red"),
                ("quantity", "3"),
                ("description", "red"),
            ],
        )
        .await;
    assert_eq!(edit.status(), 303);

    // Disable bob: his session and his token stop working at once (no restart).
    let out = db.shop(&["user", "disable", "bob"], "");
    assert!(out.status.success(), "{}", said(&out));
    common::heard("bob's session is refused", 303, || async {
        bob.get(&shop.url("/")).await.status().as_u16()
    })
    .await;
    let refused = bob_api
        .post(shop.url("/api/items"))
        .json(&item)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "bob's token is refused");
    assert!(
        Seller::log_in(&shop.url, "bob", PASSWORD).await.is_err(),
        "and he cannot log in"
    );
    // An admin disables a user from the account page; nobody else may.
    let carl = Seller::sign_up(&shop.url, "carl").await;
    let refused = ann
        .post(
            &shop.url("/account"),
            &shop.url("/account/users/disable"),
            &[("username", "carl")],
        )
        .await;
    assert_eq!(refused.status(), 403, "only an admin disables");
    assert_eq!(carl.get(&shop.url("/")).await.status(), 200);
    let disabled = boss
        .post(
            &shop.url("/account"),
            &shop.url("/account/users/disable"),
            &[("username", "Carl")],
        )
        .await;
    assert_eq!(disabled.status(), 303);
    assert_eq!(
        carl.get(&shop.url("/")).await.status(),
        303,
        "carl's session ended at once"
    );
    let listed = said(&db.shop(&["user", "list"], ""));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("bob ") && l.contains(" no ") && l.contains("yes")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("boss ") && l.contains(" yes ")),
        "{listed}"
    );
}

async fn api_tokens_are_shown_once_stored_hashed_and_revocable(backend: Backend) {
    let (db, shop) = start(backend);
    let ann = Seller::sign_up(&shop.url, "ann").await;
    let token = ann.api_token(&shop.url).await;
    assert!(token.starts_with("shop_") && token.len() == 69, "{token}");
    let api = |token: &str| {
        client()
            .post(shop.url("/api/items"))
            .bearer_auth(token)
            .json(&json!({"name": "By token", "quantity": 1, "description": "x"}))
    };
    assert_eq!(common::status_of(api(&token)).await, 201);
    let account = ann.get(&shop.url("/account")).await.text().await.unwrap();
    assert!(
        account.contains("<td>tests</td>"),
        "listed by name:\n{account}"
    );
    assert!(!account.contains(&token), "never shown again");
    assert!(
        !account.contains("<td>never</td>"),
        "its use is recorded:\n{account}"
    );

    // An idempotency key answers only its own seller: another's replay gets 409.
    let keyed = |token: &str| api(token).header("idempotency-key", "ann-lamp-1");
    let first = keyed(&token).send().await.unwrap();
    assert_eq!(first.status(), 201);
    let again = keyed(&token).send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let bob = Seller::sign_up(&shop.url, "bob").await;
    let bobs_token = bob.api_token(&shop.url).await;
    let (status, _, body) = common::answer_parts(keyed(&bobs_token).send().await.unwrap()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("another seller"), "{body}");
    assert_eq!(
        db.rows("SELECT count(*) FROM items WHERE idempotency_key = 'ann-lamp-1'")
            .await,
        ["1"]
    );

    // A browser's session writes through the API only with its form token.
    let csrf = common::hidden_field(&account, "csrf_token");
    let with_session = || {
        client()
            .post(shop.url("/api/items"))
            .header("cookie", &ann.cookie)
            .json(&json!({"name": "By session", "quantity": 1, "description": "x"}))
    };
    assert_eq!(
        common::status_of(with_session()).await,
        401,
        "a cookie alone is not enough (CSRF)"
    );
    assert_eq!(
        common::status_of(with_session().header("x-csrf-token", &csrf)).await,
        201
    );

    // Revoked on the account page: 401 at once.
    let id = db
        .rows("SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'ann'")
        .await[0]
        .clone();
    let revoke = ann
        .post(
            &shop.url("/account"),
            &shop.url(&format!("/account/tokens/{id}/revoke")),
            &[],
        )
        .await;
    assert_eq!(revoke.status(), 303);
    assert_eq!(common::status_of(api(&token)).await, 401);

    // From the command line: create (printed once), list, use, revoke.
    let out = db.shop(&["token", "create", "ann", "--name", "backup script"], "");
    assert!(out.status.success(), "{}", said(&out));
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(common::status_of(api(&cli_token)).await, 201);
    let listed = said(&db.shop(&["token", "list", "ann"], ""));
    assert!(
        listed.contains("backup script") && !listed.contains(&cli_token),
        "{listed}"
    );
    let cli_id = db
        .rows("SELECT id FROM api_tokens WHERE name = 'backup script'")
        .await[0]
        .clone();
    assert!(db
        .shop(&["token", "revoke", "ann", &cli_id], "")
        .status
        .success());
    common::heard("the revoked token is refused", 401, || {
        common::status_of(api(&cli_token))
    })
    .await;

    // The database keeps hashes only: no token, no session id, no password in clear.
    let session = session_of(&ann)
        .trim_start_matches("shop_session=")
        .to_owned();
    let everything = [
        db.rows("SELECT * FROM users").await,
        db.rows("SELECT * FROM sessions").await,
        db.rows("SELECT * FROM api_tokens").await,
        db.rows("SELECT * FROM login_failures").await,
    ]
    .concat()
    .join("\n");
    for secret in [
        token.as_str(),
        cli_token.as_str(),
        session.as_str(),
        PASSWORD,
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} is in the database in clear"
        );
    }
    let digest = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    assert!(
        everything.contains(&digest(&session)),
        "sessions are kept as their SHA-256"
    );
    let hashes = db.rows("SELECT password_hash FROM users").await;
    assert!(
        hashes
            .iter()
            .all(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")),
        "{hashes:?}"
    );
    let logs = shop.logs();
    for secret in [
        token.as_str(),
        cli_token.as_str(),
        session.as_str(),
        PASSWORD,
    ] {
        assert!(!logs.contains(secret), "{secret} reached the log");
    }
    for event in [
        "event=\"signup\"",
        "event=\"token_created\"",
        "event=\"token_revoked\"",
    ] {
        assert!(logs.contains(event), "{event} is logged:\n{logs}");
    }
}

async fn passwords_change_and_old_hashes_are_upgraded(backend: Backend) {
    let (db, shop) = start(backend);
    let phone = Seller::sign_up(&shop.url, "ann").await;
    let laptop = Seller::log_in(&shop.url, "ann", PASSWORD).await.unwrap();
    let new_password = "amber lighthouse at dusk";
    let wrong = laptop
        .post(
            &shop.url("/account"),
            &shop.url("/account/password"),
            &[
                ("current_password", "not it at all"),
                ("new_password", new_password),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not your current password"));
    let changed = laptop
        .post(
            &shop.url("/account"),
            &shop.url("/account/password"),
            &[
                ("current_password", PASSWORD),
                ("new_password", new_password),
            ],
        )
        .await;
    assert_eq!(changed.status(), 303);
    assert_eq!(
        laptop.get(&shop.url("/")).await.status(),
        200,
        "this session goes on"
    );
    assert_eq!(
        phone.get(&shop.url("/")).await.status(),
        303,
        "the other one ended"
    );
    assert!(Seller::log_in(&shop.url, "ann", PASSWORD).await.is_err());
    Seller::log_in(&shop.url, "ann", new_password)
        .await
        .unwrap();

    // A hash made with weaker parameters (an older release's) is replaced at the next login.
    let weak = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(4096, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut rand::thread_rng());
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(new_password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    };
    db.rows(&format!(
        "UPDATE users SET password_hash = '{weak}' WHERE username_key = 'ann'"
    ))
    .await;
    Seller::log_in(&shop.url, "ann", new_password)
        .await
        .unwrap();
    let upgraded = db
        .rows("SELECT password_hash FROM users WHERE username_key = 'ann'")
        .await;
    assert!(
        upgraded[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded:?}"
    );

    // End the other sessions from the account page.
    let other = Seller::log_in(&shop.url, "ann", new_password)
        .await
        .unwrap();
    let ended = laptop
        .post(
            &shop.url("/account"),
            &shop.url("/account/sessions/end-others"),
            &[],
        )
        .await;
    assert_eq!(ended.status(), 303);
    assert_eq!(other.get(&shop.url("/")).await.status(), 303);
    assert_eq!(laptop.get(&shop.url("/")).await.status(), 200);
}

/// POST the login form from `address` (as the trusted local proxy tells it).
async fn try_login(shop: &Shop, name: &str, password: &str, address: &str) -> reqwest::Response {
    let form = common::open_form(&client(), &shop.url("/login")).await;
    client()
        .post(shop.url("/login"))
        .header("cookie", &form.cookie)
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

async fn guessing_is_throttled_on_every_instance(backend: Backend) {
    let (db, shop) = start(backend);
    let other_instance = Shop::start(&db.url, &[]);
    Seller::sign_up(&shop.url, "ann").await;

    // An unknown user and a wrong password: the same answer, in about the same time.
    let started = Instant::now();
    let unknown = try_login(&shop, "nobody-here", "some guess 123", "198.51.100.1").await;
    let unknown_took = started.elapsed();
    let started = Instant::now();
    let wrong = try_login(&shop, "ann", "some guess 123", "198.51.100.2").await;
    let wrong_took = started.elapsed();
    assert_eq!(
        (unknown.status().as_u16(), wrong.status().as_u16()),
        (401, 401)
    );
    let (unknown, wrong) = (unknown.text().await.unwrap(), wrong.text().await.unwrap());
    assert_eq!(alert(&unknown), "Wrong username or password.");
    assert_eq!(alert(&unknown), alert(&wrong));
    assert_eq!(
        unknown
            .replace("nobody-here", "ann")
            .lines()
            .filter(|l| !l.contains("csrf_token"))
            .collect::<Vec<_>>(),
        wrong
            .lines()
            .filter(|l| !l.contains("csrf_token"))
            .collect::<Vec<_>>(),
        "the same page but for the name typed"
    );
    eprintln!("login answer: unknown user {unknown_took:?}, wrong password {wrong_took:?}");
    assert!(
        unknown_took * 3 > wrong_took,
        "an unknown user costs a hash too ({unknown_took:?} vs {wrong_took:?})"
    );

    // Ten failures for one account, from ten addresses: the next try gets 429 on every
    // instance, even with the right password, and says for how long.
    for n in 3..=11 {
        let response = try_login(&shop, "Ann", "wrong guess", &format!("198.51.100.{n}")).await;
        assert_eq!(response.status(), 401);
    }
    for instance in [&shop, &other_instance] {
        let response = try_login(instance, "ann", PASSWORD, "198.51.100.77").await;
        assert_eq!(
            response.status(),
            429,
            "account throttled on every instance"
        );
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&wait), "a while, not for ever: {wait}");
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("Too many failed sign-ins"));
    }

    // Ten failures from one address, for ten names: that address waits, others do not.
    for n in 0..10 {
        let response = try_login(
            &other_instance,
            &format!("guess{n}"),
            "wrong guess",
            "203.0.113.5",
        )
        .await;
        assert_eq!(response.status(), 401);
    }
    assert_eq!(
        try_login(&shop, "someone", "wrong guess", "203.0.113.5")
            .await
            .status(),
        429
    );
    assert_eq!(
        try_login(&shop, "someone", "wrong guess", "203.0.113.6")
            .await
            .status(),
        401
    );
    let logs = format!("{}{}", shop.logs(), other_instance.logs());
    assert!(
        logs.lines().any(|l| l.contains("event=\"login_failed\"")
            && l.contains("user=ann")
            && l.contains("address=198.51.100.2")),
        "{logs}"
    );
    assert!(logs.contains("event=\"login_throttled\""), "{logs}");
    assert!(
        !logs.contains("wrong guess") && !logs.contains(PASSWORD),
        "no password is logged"
    );
}

/// The hashing bound, not the guessing one: 32 right passwords at once (a limit of 100
/// checks, so that none is refused for guessing; `attacks.rs` has the limit's own tests).
async fn a_login_storm_is_bounded_and_answered(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[("SHOP_ACCOUNTS__LOGIN_ATTEMPTS", "100")]);
    Seller::sign_up(&shop.url, "ann").await;
    let form = common::open_form(&client(), &shop.url("/login")).await;
    let started = Instant::now();
    let storm: Vec<_> = (0..32)
        .map(|n| {
            let (url, form) = (shop.url("/login"), form.clone());
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("cookie", &form.cookie)
                    .header("x-forwarded-for", format!("192.0.2.{n}"))
                    .form(&[
                        ("csrf_token", form.token.as_str()),
                        ("username", "ann"),
                        ("password", PASSWORD),
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
    for answer in storm {
        statuses.push(answer.await.unwrap());
    }
    eprintln!("32 logins at once: {statuses:?} in {:?}", started.elapsed());
    assert!(
        statuses.iter().all(|s| *s == 303 || *s == 503),
        "signed in or told to retry: {statuses:?}"
    );
    assert!(statuses.contains(&303));
}

async fn cookies_over_http_and_https(backend: Backend) {
    let (_db, shop) = start(backend);
    let form = common::open_form(&client(), &shop.url("/signup")).await;
    let secure_form = common::https_form(&shop.url("/signup")).await;
    let sign_up = |https: bool| {
        let form = if https { &secure_form } else { &form };
        let mut request = client()
            .post(shop.url("/signup"))
            .header("cookie", &form.cookie);
        if https {
            request = request.header("x-forwarded-proto", "https");
        }
        let name = if https { "secure-sam" } else { "plain-pat" };
        request.form(&[
            ("csrf_token", form.token.as_str()),
            ("username", name),
            ("password", PASSWORD),
        ])
    };
    let plain = sign_up(false).send().await.unwrap();
    let cookie = plain.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("shop_session=") && cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    let secure = sign_up(true).send().await.unwrap();
    let cookies: Vec<_> = secure
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies[0].starts_with("__Host-shop_session=")
            && cookies[0].ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "{cookies:?}"
    );
    // The __Host- cookie signs the browser in, over HTTPS.
    let id = cookies[0].split(';').next().unwrap();
    let signed_in = client()
        .get(shop.url("/"))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("{}; {id}", secure_form.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
}

async fn closed_sign_up_leaves_it_to_the_command_line(backend: Backend) {
    let db = TestDb::new(backend);
    // Before any instance has run (as right after `apt install`): the command migrates.
    let out = db.shop(
        &["user", "add", "first-admin", "--admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", said(&out));
    let shop = Shop::start(&db.url, &[("SHOP_ACCOUNTS__SIGNUP", "closed")]);
    let (status, html) = common::get_text(&shop.url("/signup")).await;
    assert_eq!(status, 403);
    assert!(html.contains("ask its admin"), "{html}");
    let out = db.shop(&["user", "add", "carol"], "short\n");
    assert!(
        !out.status.success() && said(&out).contains("at least 8 characters"),
        "{}",
        said(&out)
    );
    let out = db.shop(&["user", "add", "carol"], &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", said(&out));
    assert!(!said(&out).contains(PASSWORD));
    let out = db.shop(&["user", "add", "CAROL"], &format!("{PASSWORD}\n"));
    assert!(
        !out.status.success() && said(&out).contains("exists already"),
        "{}",
        said(&out)
    );
    Seller::log_in(&shop.url, "carol", PASSWORD).await.unwrap();
    let out = db.shop(&["user", "password", "carol"], "a brand new passphrase\n");
    assert!(out.status.success(), "{}", said(&out));
    Seller::log_in(&shop.url, "carol", "a brand new passphrase")
        .await
        .unwrap();
}

/// The service deletes sessions past their lifetime: a session idle for longer than
/// `accounts.session_idle_secs` is refused and removed.
async fn idle_sessions_end(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[("SHOP_ACCOUNTS__SESSION_IDLE_SECS", "60")]);
    let ann = Seller::sign_up(&shop.url, "ann").await;
    assert_eq!(ann.get(&shop.url("/")).await.status(), 200);
    let long_ago = match backend {
        Backend::Postgres => "now() - interval '2 minutes'".to_owned(),
        Backend::Sqlite => format!(
            "'{}'",
            (chrono::Utc::now() - chrono::Duration::minutes(2))
                .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        ),
    };
    db.rows(&format!("UPDATE sessions SET last_seen_at = {long_ago}"))
        .await;
    common::heard("an idle session has ended", 303, || async {
        ann.get(&shop.url("/")).await.status().as_u16()
    })
    .await;
    assert_eq!(
        db.rows("SELECT count(*) FROM sessions").await,
        ["0"],
        "and is deleted"
    );
}

both_backends!(
    sign_up_log_in_create_log_out,
    only_the_seller_or_an_admin_changes_an_item,
    api_tokens_are_shown_once_stored_hashed_and_revocable,
    passwords_change_and_old_hashes_are_upgraded,
    guessing_is_throttled_on_every_instance,
    a_login_storm_is_bounded_and_answered,
    cookies_over_http_and_https,
    closed_sign_up_leaves_it_to_the_command_line,
    idle_sessions_end,
);

/// A gauge's value on an instance's `/metrics` (the line that starts with `series `).
async fn gauge(shop: &Shop, series: &str) -> f64 {
    let (_, text) = common::get_text(&shop.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} is not in /metrics:\n{text}"))
}

/// Wait (at most 10 s) until an instance's gauge reads `value`.
async fn wait_for_gauge(shop: &Shop, series: &str, value: f64) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while gauge(shop, series).await != value {
        assert!(Instant::now() < deadline, "{series} never reached {value}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// PostgreSQL instances remember sessions and tokens between requests, and forget them
/// when the database says they changed, whoever changed them: another instance, the
/// command line or plain SQL. An instance whose listener is cut forgets everything and
/// reads the database until it listens again, so a change made meanwhile is not missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_remember_sessions_and_hear_every_change() {
    let (db, shop) = start(Backend::Postgres);
    let other = Shop::start(&db.url, &[]);
    let ann = Seller::sign_up(&shop.url, "ann").await;
    let token = ann.api_token(&shop.url).await;
    let create = |instance: &Shop| {
        client()
            .post(instance.url("/api/items"))
            .bearer_auth(&token)
            .json(&json!({"name": "Remembered", "quantity": 1, "description": "x"}))
    };
    wait_for_gauge(&other, "shop_auth_changes_heard", 1.0).await;
    for _ in 0..3 {
        assert_eq!(ann.get(&other.url("/items")).await.status(), 200);
        assert_eq!(common::status_of(create(&other)).await, 201);
    }
    assert_eq!(
        gauge(&other, "shop_auth_remembered{kind=\"session\"}").await,
        1.0
    );
    assert_eq!(
        gauge(&other, "shop_auth_remembered{kind=\"token\"}").await,
        1.0
    );

    // Disabled with plain SQL: both refused on the instance that remembered them.
    db.rows("UPDATE users SET disabled = true").await;
    common::heard("a disabled user's session", 303, || async {
        ann.get(&other.url("/")).await.status().as_u16()
    })
    .await;
    assert_eq!(common::status_of(create(&other)).await, 401, "and token");
    db.rows("UPDATE users SET disabled = false").await;
    assert_eq!(
        common::status_of(create(&other)).await,
        201,
        "enabled again"
    );

    // Cut every listener, and end the session while they may not be listening.
    assert_eq!(ann.get(&other.url("/")).await.status(), 200);
    let cut = db
        .rows(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'shop-listener'",
        )
        .await;
    assert_eq!(cut, ["2"], "one listener per instance");
    db.rows("DELETE FROM sessions").await;
    common::heard(
        "a session ended while the listener was cut",
        303,
        || async { ann.get(&other.url("/")).await.status().as_u16() },
    )
    .await;
    wait_for_gauge(&other, "shop_auth_changes_heard", 1.0).await;
    assert!(
        other
            .logs()
            .contains("no longer hearing session and token changes"),
        "the loss is logged"
    );

    // Listening again: what it remembers is forgotten on the next change.
    let ann = Seller::log_in(&shop.url, "ann", PASSWORD).await.unwrap();
    assert_eq!(ann.get(&other.url("/")).await.status(), 200);
    assert_eq!(ann.get(&other.url("/")).await.status(), 200);
    assert_eq!(
        gauge(&other, "shop_auth_remembered{kind=\"session\"}").await,
        1.0
    );
    let logout = ann.post(&shop.url("/"), &shop.url("/logout"), &[]).await;
    assert_eq!(logout.status(), 303);
    let took = common::heard("a logout on the other instance", 303, || async {
        ann.get(&other.url("/")).await.status().as_u16()
    })
    .await;
    println!("logout on one instance refused on the other after {took:?}");
}

/// Resident memory of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A password is judged (zxcvbn's word lists, about 7 MiB of tables once built) in a
/// process of its own: an instance that has judged new passwords is no larger than it was
/// (within 1 MiB) before, when it had served pages and hashed a login's password. And it
/// still judges them: a common one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judging_passwords_leaves_no_word_lists_behind() {
    let db = TestDb::new(Backend::Sqlite);
    let other = Shop::start(&db.url, &[]);
    Seller::sign_up(&other.url, "olga").await;
    let shop = Shop::start(&db.url, &[]);
    // Warm: pages, the form's token, a login's hash on a hashing thread.
    for path in ["/items", "/signup", "/login"] {
        assert_eq!(
            client().get(shop.url(path)).send().await.unwrap().status(),
            200
        );
    }
    Seller::log_in(&shop.url, "olga", PASSWORD).await.unwrap();
    let before = resident_kib(shop.pid());
    for name in ["pia", "quinn", "rosa"] {
        Seller::sign_up(&shop.url, name).await;
    }
    let Err((status, page)) = Seller::try_sign_up(&shop.url, "sam", "password1").await else {
        panic!("a common password is refused");
    };
    assert_eq!(status, 422);
    assert!(page.contains("most common"), "{page}");
    let after = resident_kib(shop.pid());
    eprintln!("resident: {before} KiB before four sign-ups, {after} KiB after");
    assert!(
        after <= before + 1024,
        "four sign-ups left {} KiB behind ({before} → {after} KiB)",
        after.saturating_sub(before)
    );
    assert!(
        !shop
            .logs()
            .contains("could not run in a process of its own"),
        "{}",
        shop.logs()
    );
}
