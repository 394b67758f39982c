//! The domain: an item for sale, the rules a new or edited item must satisfy, and the
//! parameters of a list page (paging and search).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub const MAX_TEXT_CHARS: usize = 256;
pub const MAX_QUANTITY: i64 = 1_000_000;
pub const DEFAULT_PER_PAGE: u32 = 50;
pub const MAX_PER_PAGE: u32 = 1000;
pub const MAX_SEARCH_CHARS: usize = 256;

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub quantity: i32,
    pub description: String,
    pub date_added: DateTime<Utc>,
}

/// A validated item, ready to be stored (the server sets `date_added`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub name: String,
    pub quantity: i32,
    pub description: String,
}

/// Field name → what is wrong with it, in words a person understands.
pub type FieldErrors = BTreeMap<&'static str, String>;

/// An item as a person or client sent it: every field raw, possibly missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ItemInput {
    pub name: Option<String>,
    pub quantity: Option<String>,
    pub description: Option<String>,
}

impl ItemInput {
    /// Apply the rules: name and description trimmed, 1–256 characters; quantity a whole
    /// number from 0 to 1,000,000.
    pub fn validate(&self) -> Result<NewItem, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = required_text(&mut errors, "name", self.name.as_deref());
        let description = required_text(&mut errors, "description", self.description.as_deref());
        let quantity = quantity(&mut errors, self.quantity.as_deref());
        match (name, quantity, description) {
            (Some(name), Some(quantity), Some(description)) if errors.is_empty() => Ok(NewItem {
                name,
                quantity,
                description,
            }),
            _ => Err(errors),
        }
    }
}

fn required_text(
    errors: &mut FieldErrors,
    field: &'static str,
    raw: Option<&str>,
) -> Option<String> {
    let text = raw.unwrap_or("").trim();
    let chars = text.chars().count();
    if chars == 0 {
        errors.insert(field, format!("Please enter a {field}."));
        None
    } else if chars > MAX_TEXT_CHARS {
        errors.insert(
            field,
            format!(
                "The {field} is {chars} characters long; at most {MAX_TEXT_CHARS} are allowed."
            ),
        );
        None
    } else if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        errors.insert(field, format!("The {field} contains control characters."));
        None
    } else {
        Some(text.to_owned())
    }
}

fn quantity(errors: &mut FieldErrors, raw: Option<&str>) -> Option<i32> {
    let text = raw.unwrap_or("").trim();
    let message = if text.is_empty() {
        "Please enter a quantity.".to_owned()
    } else {
        match text.parse::<i64>() {
            Ok(n) if (0..=MAX_QUANTITY).contains(&n) => return Some(n as i32),
            Ok(_) => format!("The quantity must be between 0 and {MAX_QUANTITY}."),
            Err(_) => format!("The quantity must be a whole number, not {text:?}."),
        }
    };
    errors.insert("quantity", message);
    None
}

/// Checks the idempotency key a form or API client sent: absent or empty means none;
/// otherwise 8 to 128 letters, digits, `-` or `_`.
pub fn idempotency_key(raw: Option<&str>) -> Result<Option<&str>, String> {
    match raw.map(str::trim).filter(|k| !k.is_empty()) {
        None => Ok(None),
        Some(key)
            if (8..=128).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(Some(key))
        }
        Some(_) => {
            Err("The idempotency key must be 8 to 128 letters, digits, '-' or '_'.".to_owned())
        }
    }
}

/// A fresh idempotency key for a form.
pub fn new_idempotency_key() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// Which items a list page shows: a page of the newest-first list, optionally searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page: u32,
    pub per_page: u32,
    /// Matched case-insensitively against name and description; empty means everything.
    pub search: String,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            search: String::new(),
        }
    }
}

impl ListQuery {
    /// Read `page`, `per_page` and `q` as they came in a query string. Garbage is an error
    /// with a message; a `per_page` above the maximum is lowered to it.
    pub fn parse(
        page: Option<&str>,
        per_page: Option<&str>,
        q: Option<&str>,
    ) -> Result<Self, String> {
        let page = positive(page, "page")?.unwrap_or(1);
        let per_page = positive(per_page, "per_page")?
            .unwrap_or(DEFAULT_PER_PAGE)
            .min(MAX_PER_PAGE);
        let search = q.unwrap_or("").trim().to_owned();
        if search.chars().count() > MAX_SEARCH_CHARS {
            return Err(format!(
                "The search text is longer than {MAX_SEARCH_CHARS} characters."
            ));
        }
        Ok(ListQuery {
            page,
            per_page,
            search,
        })
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }

    /// The `LIKE` pattern for the search text, with `%`, `_` and `\` taken literally.
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.search.len() + 2);
        pattern.push('%');
        for c in self.search.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

fn positive(raw: Option<&str>, name: &str) -> Result<Option<u32>, String> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "{name} must be a whole number from 1 to 1000000, not {text:?}."
            )),
        },
    }
}

/// One page of items, and whether there is another after it.
#[derive(Debug, Clone)]
pub struct ItemPage {
    pub items: Vec<Item>,
    pub has_next: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, quantity: &str, description: &str) -> ItemInput {
        ItemInput {
            name: Some(name.into()),
            quantity: Some(quantity.into()),
            description: Some(description.into()),
        }
    }

    #[test]
    fn valid_input_is_trimmed() {
        let item = input("  Lamp ", " 3 ", "\tbrass\n").validate().unwrap();
        assert_eq!(
            item,
            NewItem {
                name: "Lamp".into(),
                quantity: 3,
                description: "brass".into()
            }
        );
    }

    #[test]
    fn every_bad_field_gets_a_message() {
        let errors = input("   ", "-1", "").validate().unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors["name"].contains("Please enter"));
        assert!(errors["quantity"].contains("between 0 and 1000000"));
        assert!(errors["description"].contains("Please enter"));
    }

    #[test]
    fn limits_are_inclusive() {
        let longest = "é".repeat(MAX_TEXT_CHARS);
        assert!(input(&longest, "1000000", "x").validate().is_ok());
        assert!(input("x", "0", &longest).validate().is_ok());
        let errors = input(&format!("{longest}a"), "1000001", "x")
            .validate()
            .unwrap_err();
        assert!(errors["name"].contains("257 characters"));
        assert!(errors.contains_key("quantity"));
    }

    #[test]
    fn quantity_must_be_a_whole_number() {
        for bad in ["abc", "1.5", "1e3", "99999999999999999999"] {
            let errors = input("a", bad, "b").validate().unwrap_err();
            assert!(errors.contains_key("quantity"), "{bad}");
        }
    }

    #[test]
    fn missing_fields_are_errors() {
        let errors = ItemInput::default().validate().unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["description", "name", "quantity"]
        );
    }

    #[test]
    fn list_query_defaults_and_clamps() {
        assert_eq!(
            ListQuery::parse(None, None, None).unwrap(),
            ListQuery::default()
        );
        let q = ListQuery::parse(Some("3"), Some("5000"), Some(" lamp ")).unwrap();
        assert_eq!(
            (q.page, q.per_page, q.search.as_str()),
            (3, MAX_PER_PAGE, "lamp")
        );
        assert_eq!(q.offset(), 2000);
        assert!(ListQuery::parse(Some("0"), None, None).is_err());
        assert!(ListQuery::parse(None, Some("ten"), None).is_err());
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert_eq!(idempotency_key(None), Ok(None));
        assert_eq!(idempotency_key(Some(" ")), Ok(None));
        let fresh = new_idempotency_key();
        assert_eq!(idempotency_key(Some(&fresh)), Ok(Some(fresh.as_str())));
        assert!(idempotency_key(Some("short")).is_err());
        assert!(idempotency_key(Some("has spaces in it")).is_err());
        assert_ne!(new_idempotency_key(), fresh);
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        let q = ListQuery::parse(None, None, Some(r"50%_off\")).unwrap();
        assert_eq!(q.like_pattern(), r"%50\%\_off\\%");
    }
}
