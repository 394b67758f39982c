//! The HTML templates and the stylesheet, embedded in the binary and compiled once at
//! start (tera escapes every value in `.html` templates).

use tera::{Context, Tera};

use std::sync::{Arc, OnceLock};

use super::hash::Fnv1a;

pub const STYLESHEET: &str = include_str!("templates/shop.css");

/// The shop's icon, at a fixed name: browsers ask for it once and keep it a day.
pub const FAVICON: &str = include_str!("templates/favicon.svg");
pub const FAVICON_PATH: &str = "/static/favicon.svg";

/// Where the stylesheet is served: its name carries a hash of its content, so it can be
/// cached for good and a new version is fetched under its new name.
pub fn stylesheet_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let mut hash = Fnv1a::new();
        hash.write(STYLESHEET.as_bytes());
        format!("/static/shop.{:08x}.css", hash.finish() as u32)
    })
}

/// What identifies the pages this build renders: shop's version, the templates and the
/// stylesheet. Part of every page's `ETag`, so an upgrade that changes a page changes it.
pub fn fingerprint() -> u64 {
    static FINGERPRINT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let mut hash = Fnv1a::new();
        hash.write(env!("CARGO_PKG_VERSION").as_bytes());
        for (name, text) in TEMPLATES {
            hash.write(name.as_bytes());
            hash.write(text.as_bytes());
        }
        hash.write(STYLESHEET.as_bytes());
        hash.finish()
    })
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("form.html", include_str!("templates/form.html")),
    ("list.html", include_str!("templates/list.html")),
    ("item.html", include_str!("templates/item.html")),
    ("delete.html", include_str!("templates/delete.html")),
    ("error.html", include_str!("templates/error.html")),
    (
        "credentials.html",
        include_str!("templates/credentials.html"),
    ),
    ("account.html", include_str!("templates/account.html")),
    ("orders.html", include_str!("templates/orders.html")),
    ("order.html", include_str!("templates/order.html")),
];

/// What the header of every page shows (who is signed in) and the form token the page's
/// forms carry (the signed-in header's "Log out" is one of them).
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub username: Option<String>,
    pub csrf_token: FormToken,
    /// How many orders of the viewer's items wait for hand-over (the header says so).
    pub waiting_sales: i64,
}

impl Frame {
    /// Put the frame into a template's context: the form token only for somebody signed
    /// in (every form but the login and sign-up ones is theirs alone, and those two ask
    /// with `insert_form_token`), so an anonymous reader's page makes and signs nothing.
    pub fn insert_into(&self, context: &mut tera::Context) {
        context.insert("viewer", &self.username);
        context.insert("waiting_sales", &self.waiting_sales);
        if self.username.is_some() {
            self.insert_form_token(context);
        }
    }

    /// Put the form token into a template's context (made now, with the CSRF cookie, for
    /// a browser that has none).
    pub fn insert_form_token(&self, context: &mut tera::Context) {
        context.insert("csrf_token", self.csrf_token.get());
    }

    /// The token the page's forms carry, as part of its `ETag`: none for an anonymous
    /// reader (whose pages have no form of theirs).
    pub fn signed_in_token(&self) -> &str {
        if self.username.is_some() {
            self.csrf_token.get()
        } else {
            ""
        }
    }
}

/// The form token a page embeds, made (and the CSRF cookie with it, for a browser that
/// sent none: `csrf::form_token`) the first time a page asks for it.
#[derive(Clone, Default)]
pub struct FormToken(Option<Arc<LazyToken>>);

struct LazyToken {
    make: Box<dyn Fn() -> String + Send + Sync>,
    made: OnceLock<String>,
}

impl FormToken {
    pub fn new(make: impl Fn() -> String + Send + Sync + 'static) -> FormToken {
        FormToken(Some(Arc::new(LazyToken {
            make: Box::new(make),
            made: OnceLock::new(),
        })))
    }

    /// The token (made on the first call); empty outside the page router.
    pub fn get(&self) -> &str {
        match &self.0 {
            Some(lazy) => lazy.made.get_or_init(|| (lazy.make)()),
            None => "",
        }
    }
}

impl std::fmt::Debug for FormToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormToken")
    }
}

pub struct Templates {
    tera: Tera,
}

impl Templates {
    pub fn load() -> Result<Templates, tera::Error> {
        let mut tera = Tera::default();
        tera.add_raw_templates(TEMPLATES.iter().copied())?;
        tera.autoescape_on(vec![".html"]);
        Ok(Templates { tera })
    }

    pub fn render(&self, name: &str, context: &Context) -> Result<String, tera::Error> {
        let mut context = context.clone();
        context.insert("stylesheet", stylesheet_path());
        self.tera.render(name, &context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_templates_compile_and_escape() {
        let templates = Templates::load().unwrap();
        let mut context = Context::new();
        context.insert("status", &404);
        context.insert("reason", "Not Found");
        context.insert("message", "<script>alert(1)</script>");
        context.insert("request_id", "abc");
        let html = templates.render("error.html", &context).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }
}
