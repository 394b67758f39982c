//! What a visitor's browser sees: a real headless Chromium (one per run of this file)
//! on a real shop instance with PostgreSQL. A person's flows, done with clicks and typing
//! (the add-an-item and the buy flows with the keyboard alone); on every page and state: no
//! console error or CSP violation, no serious or critical axe-core finding, a screenshot
//! at 1280×800 and at a phone's 390×844, and on the phone no sideways scrolling and no
//! control under 24×24 px. The screenshots land in `target/screenshots/`.

use crate::common;

use common::browser::{Browser, DESKTOP, PHONE};
use common::{create_item, Backend, Shop, TestDb, PASSWORD};
use fantoccini::key::Key;
use serde_json::json;

/// Every state the test looked at, and what was wrong with it.
#[derive(Default)]
struct Audit {
    screenshots: Vec<String>,
    problems: Vec<String>,
}

impl Audit {
    /// Check the page as it is now on both screens, and keep its pictures as `name`.
    async fn look(&mut self, browser: &Browser, name: &str) {
        let path = browser.path().await;
        for problem in browser.console_problems().await {
            self.problems
                .push(format!("{name} ({path}): console: {problem}"));
        }
        for screen in [DESKTOP, PHONE] {
            browser.use_screen(screen).await;
            for violation in browser.serious_accessibility_violations().await {
                self.problems.push(format!(
                    "{name} ({path}) on the {}: axe: {violation}",
                    screen.name
                ));
            }
            if screen.mobile {
                for problem in browser.layout_problems().await {
                    self.problems
                        .push(format!("{name} ({path}) on the phone: {problem}"));
                }
            }
            let shot = browser.screenshot(name, screen).await;
            self.screenshots.push(shot.display().to_string());
        }
        browser.use_screen(DESKTOP).await;
    }
}

/// Submit the form the focused field belongs to, as Enter does.
fn enter() -> String {
    Key::Enter.to_string()
}

fn tab() -> String {
    Key::Tab.to_string()
}

/// The checks find what they look for: a field without a label, a console error, an
/// inline style the Content-Security-Policy refuses, and a control too wide for the
/// phone, put on the page for a moment.
async fn audit_can_fail(b: &Browser) {
    let spoil = r#"const field = document.createElement('input');
        field.id = 'spoiled';
        field.style.width = '600px';
        document.querySelector('main').append(field);
        const style = document.createElement('style');
        style.textContent = 'main { color: red; }';
        document.head.append(style);
        console.error('spoiled on purpose');"#;
    b.client.execute(spoil, vec![]).await.unwrap();
    b.use_screen(PHONE).await;
    let axe = b.serious_accessibility_violations().await;
    assert!(
        axe.iter()
            .any(|v| v.contains("label") && v.contains("#spoiled")),
        "axe: {axe:?}"
    );
    let layout = b.layout_problems().await;
    assert!(
        layout.iter().any(|p| p.contains("scrolls sideways")),
        "{layout:?}"
    );
    let console = b.console_problems().await;
    assert!(
        console.iter().any(|m| m.contains("spoiled on purpose")),
        "{console:?}"
    );
    assert!(
        console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "the refused inline style is reported: {console:?}"
    );
    b.use_screen(DESKTOP).await;
    b.reload().await;
}

/// On an item's page: Tab to the quantity to buy, type it over the 1 it offers, Tab
/// to the Buy button and press Enter.
async fn buy_with_the_keyboard(b: &Browser, quantity: &str, button: &str) {
    let mut tabs = 0;
    while b.focused().await != "input#buy-quantity" {
        b.press(&tab()).await;
        tabs += 1;
        assert!(tabs < 30, "Tab never reached the quantity to buy");
    }
    b.press(&Key::Backspace.to_string()).await;
    b.press(quantity).await;
    b.press(&tab()).await;
    assert_eq!(b.focused().await, button);
    b.press_to_leave(&enter()).await;
}

async fn items_in_database(db: &TestDb) -> usize {
    db.rows("SELECT id FROM items").await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "browser tier: needs chromium, chromium-driver and axe-core; tests/run runs it"]
async fn a_person_uses_the_shop_in_a_real_browser() {
    let db = TestDb::new(Backend::Postgres);
    let shop = Shop::start(&db.url, &[]);
    let browser = Browser::start().await;
    let mut audit = Audit::default();
    let b = &browser;

    // Anonymous: the empty list, then the add-an-item link leads to the login page.
    b.goto(&shop.url("/items")).await;
    audit_can_fail(b).await;
    audit.look(b, "list-empty").await;
    b.click("header nav a[href='/']").await;
    assert_eq!(b.path().await, "/login?next=%2F");
    audit.look(b, "login").await;

    // Sign up (from the login page's link), and land back on the add-an-item form.
    b.click("main a[href^='/signup']").await;
    audit.look(b, "signup").await;
    b.fill("#username", "Ann").await;
    b.fill("#password", "short").await;
    b.click("main form button[type=submit]").await;
    assert_eq!(b.value("#username").await, "Ann", "the name typed is kept");
    let error = b.find("#password-error").await.text().await.unwrap();
    assert!(!error.is_empty(), "a too-short password is explained");
    audit.look(b, "signup-error").await;
    b.fill("#password", PASSWORD).await;
    b.click("main form button[type=submit]").await;
    assert!(
        b.text().await.contains("Signed in as Ann"),
        "{}",
        b.text().await
    );

    // Log out and in again.
    b.click("header form button").await;
    assert!(b.exists("header a[href='/login']").await, "logged out");
    b.click("header a[href='/login']").await;
    b.fill("#username", "Ann").await;
    b.fill("#password", "not the password").await;
    b.click("main form button[type=submit]").await;
    audit.look(b, "login-refused").await;
    b.fill("#username", "Ann").await;
    b.fill("#password", PASSWORD).await;
    b.click("main form button[type=submit]").await;
    assert!(b.text().await.contains("Signed in as Ann"));

    // A form with errors: each message beside its field, tied to it, and what was
    // typed is kept.
    b.goto(&shop.url("/")).await;
    audit.look(b, "add-form").await;
    b.fill("#quantity", "lots").await;
    b.fill("#description", "brass, a little dented").await;
    b.click("main form button[type=submit]").await;
    for field in ["name", "quantity"] {
        let input = b.find(&format!("#{field}")).await;
        assert_eq!(
            input.attr("aria-invalid").await.unwrap().as_deref(),
            Some("true"),
            "{field}"
        );
        let described = input.attr("aria-describedby").await.unwrap().expect(field);
        let message = b.find(&format!("#{described}")).await;
        assert!(
            !message.text().await.unwrap().is_empty(),
            "{field}'s message"
        );
        let beside: bool = serde_json::from_value(
            b.client
                .execute(
                    "return arguments[0].nextElementSibling === arguments[1];",
                    vec![json!(input), json!(message)],
                )
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(beside, "{field}'s message comes right after it");
    }
    assert_eq!(b.value("#quantity").await, "lots");
    assert_eq!(b.value("#description").await, "brass, a little dented");
    audit.look(b, "add-form-errors").await;

    // Add an item and land on the list showing it.
    b.fill("#name", "Brass lamp").await;
    b.fill("#quantity", "2").await;
    b.click("main form button[type=submit]").await;
    assert!(b.path().await.starts_with("/items"), "{}", b.path().await);
    assert!(b.text().await.contains("Brass lamp"));
    audit.look(b, "list-after-add").await;
    // Back after a create shows the form again; it does not post it again.
    let before = items_in_database(&db).await;
    b.back().await;
    assert_eq!(b.path().await, "/");
    b.reload().await;
    assert_eq!(items_in_database(&db).await, before, "Back posted nothing");
    audit.look(b, "add-form-after-back").await;

    // The add-an-item flow with the keyboard alone: Tab, typing and Enter.
    b.goto(&shop.url("/items")).await;
    let mut reached = Vec::new();
    while b.focused().await != "a \"Add an item\"" {
        b.press(&tab()).await;
        reached.push(b.focused().await);
        assert!(
            reached.len() < 20,
            "Tab never reached the add link: {reached:?}"
        );
    }
    b.press_to_leave(&enter()).await;
    assert_eq!(b.path().await, "/");
    for (field, text) in [
        ("input#name", "Kettle"),
        ("input#quantity", "2"),
        ("input#price", "12.50"),
        ("textarea#description", "whistles"),
    ] {
        let mut tabs = 0;
        while b.focused().await != field {
            b.press(&tab()).await;
            tabs += 1;
            assert!(tabs < 20, "Tab never reached {field}");
        }
        b.press(text).await;
    }
    b.press(&tab()).await;
    assert_eq!(b.focused().await, "button \"Add item\"");
    b.press_to_leave(&enter()).await;
    assert!(b.path().await.starts_with("/items"));
    assert!(b.text().await.contains("Kettle"), "added with the keyboard");

    // Search.
    b.fill("#q", "kettle").await;
    b.press_to_leave(&enter()).await;
    let found = b.text().await;
    assert!(
        found.contains("Kettle") && !found.contains("Brass lamp"),
        "{found}"
    );
    audit.look(b, "list-search").await;
    b.fill("#q", "no such thing").await;
    b.press_to_leave(&enter()).await;
    audit.look(b, "list-search-empty").await;

    // Page forward and back through a long list.
    for n in 1..=25 {
        create_item(
            &shop,
            &json!({ "name": format!("Spoon {n:02}"), "quantity": n, "description": "silver" }),
        )
        .await;
    }
    b.goto(&shop.url("/items?per_page=10")).await;
    assert!(b.text().await.contains("Spoon 25"));
    audit.look(b, "list-page-1").await;
    b.click("a[rel=next]").await;
    assert!(b.text().await.contains("Spoon 15") && !b.text().await.contains("Spoon 25"));
    b.click("a[rel=next]").await;
    assert!(b.text().await.contains("Spoon 05"));
    audit.look(b, "list-page-3").await;
    b.click("a[rel=prev]").await;
    assert!(b.text().await.contains("Spoon 15"));
    b.click("a[rel=prev]").await;
    assert!(b.text().await.contains("Spoon 25"));

    // Open an item, edit it, delete it.
    b.goto(&shop.url("/items")).await;
    let lamp = b
        .client
        .find(fantoccini::Locator::LinkText("Brass lamp"))
        .await
        .expect("the lamp in the list");
    lamp.click().await.unwrap();
    let item_path = b.path().await;
    audit.look(b, "item-own").await;
    b.click("a[href$='/edit']").await;
    audit.look(b, "edit-form").await;
    b.fill("#quantity", "").await;
    b.click("main form button[type=submit]").await;
    assert!(
        b.exists("#quantity[aria-invalid=true]").await,
        "an empty quantity is refused"
    );
    b.fill("#quantity", "7").await;
    b.click("main form button[type=submit]").await;
    assert_eq!(b.path().await, item_path);
    assert!(b.text().await.contains('7'));
    b.click("main a[href$='/delete']").await;
    audit.look(b, "delete-confirm").await;
    assert!(
        b.text().await.contains("Brass lamp"),
        "the confirmation names the item"
    );
    b.click("main form button[type=submit]").await;
    assert!(b.path().await.starts_with("/items"));
    assert!(!b.text().await.contains("Brass lamp"), "deleted");
    b.goto(&shop.url(&item_path)).await;
    audit.look(b, "not-found").await;

    // The account page.
    b.goto(&shop.url("/account")).await;
    audit.look(b, "account").await;
    b.fill("#token_name", "backup script").await;
    b.fill("#token_password", PASSWORD).await;
    b.click("form[action='/account/tokens'] button").await;
    audit.look(b, "account-new-token").await;

    // Another seller sees no edit or delete buttons on Ann's item.
    b.click("header form button").await;
    b.goto(&shop.url("/signup")).await;
    b.fill("#username", "Bob").await;
    b.fill("#password", PASSWORD).await;
    b.click("main form button[type=submit]").await;
    b.goto(&shop.url("/items")).await;
    b.client
        .find(fantoccini::Locator::LinkText("Kettle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(b.text().await.contains("Kettle"));
    assert!(
        !b.exists("a[href$='/edit']").await,
        "Bob sees no Edit on Ann's item"
    );
    assert!(
        !b.exists("a[href$='/delete'], form[action$='/delete']")
            .await
    );
    audit.look(b, "item-other-seller").await;

    // Bob buys both kettles with the keyboard alone, and lands on his order.
    let kettle_path = b.path().await;
    buy_with_the_keyboard(b, "2", "button \"Buy for 12.50 EUR each\"").await;
    assert!(b.path().await.starts_with("/orders/"), "{}", b.path().await);
    let order_path = b.path().await;
    let order = b.text().await;
    assert!(
        order.contains("placed") && order.contains("25.00 EUR") && order.contains("Kettle"),
        "{order}"
    );
    audit.look(b, "order-placed-buyer").await;
    b.click("header nav a[href='/orders']").await;
    assert!(b.text().await.contains("2 × Kettle for 25.00 EUR"));
    audit.look(b, "orders-buyer").await;
    b.goto(&shop.url(&kettle_path)).await;
    assert!(b.text().await.contains("sold out"));
    assert!(!b.exists("form.buy").await, "nothing left to buy");
    audit.look(b, "item-sold-out").await;

    // Ann sees the waiting order in the header, and hands it over.
    b.click("header form button").await;
    b.click("header a[href='/login']").await;
    b.fill("#username", "Ann").await;
    b.fill("#password", PASSWORD).await;
    b.click("main form button[type=submit]").await;
    let badge = b.find("header nav a[href='/sales'] .badge").await;
    assert!(
        badge.text().await.unwrap().starts_with('1'),
        "one order waits"
    );
    b.click("header nav a[href='/sales']").await;
    audit.look(b, "sales-waiting").await;
    b.click(&format!("ul.waiting a[href='{order_path}']")).await;
    assert_eq!(b.path().await, order_path);
    audit.look(b, "order-placed-seller").await;
    b.click(&format!("form[action='{order_path}/hand-over'] button"))
        .await;
    assert_eq!(b.path().await, order_path);
    assert!(b.text().await.contains("handed over"), "{}", b.text().await);
    assert!(
        !b.exists("form[action$='/cancel']").await,
        "too late to cancel"
    );
    audit.look(b, "order-handed-over").await;
    assert!(
        !b.exists("header nav a[href='/sales'] .badge").await,
        "nothing waits any more"
    );

    // Log out.
    b.click("header form button").await;
    assert!(b.exists("header a[href='/login']").await);
    assert!(!b.text().await.contains("Signed in"));

    browser.stop().await;
    println!("screenshots ({}):", audit.screenshots.len());
    for shot in &audit.screenshots {
        println!("  {shot}");
    }
    assert!(
        audit.problems.is_empty(),
        "what the browser found:\n{}",
        audit.problems.join("\n")
    );
}
