//! The domain: an item for sale, the rules a new or edited item must satisfy, and the
//! parameters of a list page (paging and search).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{ItemId, UserId};
use crate::money::Currency;

pub const MAX_TEXT_CHARS: usize = 256;
pub const MAX_QUANTITY: i64 = 1_000_000;
pub const DEFAULT_PER_PAGE: u32 = 50;
pub const MAX_PER_PAGE: u32 = 1000;
pub const MAX_SEARCH_CHARS: usize = 256;

/// An item as stored (read from a row by `db`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: ItemId,
    pub name: String,
    pub quantity: i32,
    pub description: String,
    pub date_added: DateTime<Utc>,
    /// The user who sells it (`None`: made before accounts, only an admin may change it).
    #[serde(skip)]
    pub owner_id: Option<UserId>,
    /// The seller's username, as the list and the item page show it.
    pub seller: Option<String>,
    /// Its price in minor units of the shop's currency; `None`: not for sale.
    pub price_minor: Option<i64>,
    /// Moved by every change (an edit, a sale, a cancelled sale): an edit made from an
    /// older version is refused (`ETag`, the edit form's hidden field).
    #[serde(skip)]
    pub version: i64,
}

impl Item {
    /// The item's `ETag`: its id and version.
    pub fn etag(&self) -> String {
        format!("\"{}v{}\"", self.id, self.version)
    }
}

/// An item as the API shows it: its fields and the shop's currency.
pub struct Priced<'a>(pub &'a Item, pub Currency);

impl Serialize for Priced<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let Priced(item, currency) = self;
        let mut s = serializer.serialize_struct("Item", 8)?;
        s.serialize_field("id", &item.id)?;
        s.serialize_field("name", &item.name)?;
        s.serialize_field("quantity", &item.quantity)?;
        s.serialize_field("description", &item.description)?;
        s.serialize_field("date_added", &item.date_added)?;
        s.serialize_field("seller", &item.seller)?;
        s.serialize_field("price_minor", &item.price_minor)?;
        s.serialize_field("currency", currency.code())?;
        s.end()
    }
}

/// A validated item, ready to be stored (the server sets `date_added`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub name: String,
    pub quantity: i32,
    pub description: String,
    /// `None`: not for sale.
    pub price_minor: Option<i64>,
}

/// Field name → what is wrong with it, in words a person understands.
pub type FieldErrors = BTreeMap<&'static str, String>;

/// An item as a person or client sent it: every field raw, possibly missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemInput {
    pub name: Option<String>,
    pub quantity: Option<String>,
    pub description: Option<String>,
    pub price: PriceInput,
}

/// A price as sent: typed into the form (`12.50`), or the API's `price_minor`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PriceInput {
    /// Not sent, or left empty: not for sale.
    #[default]
    None,
    Typed(String),
    Minor(i64),
}

impl PriceInput {
    /// What the form's price field shows.
    fn shown(&self, currency: Currency) -> String {
        match self {
            PriceInput::None => String::new(),
            PriceInput::Typed(text) => text.clone(),
            PriceInput::Minor(minor) => currency.amount(*minor),
        }
    }

    /// The price of an existing item, as its edit form shows it.
    pub fn of(item: &Item) -> PriceInput {
        item.price_minor.map_or(PriceInput::None, PriceInput::Minor)
    }

    fn validate(&self, currency: Currency) -> Result<Option<i64>, String> {
        match self {
            PriceInput::None => Ok(None),
            PriceInput::Typed(text) if text.trim().is_empty() => Ok(None),
            PriceInput::Typed(text) => currency.parse_price(text).map(Some),
            PriceInput::Minor(minor) => currency.check_minor(*minor).map(Some),
        }
    }
}

impl ItemInput {
    /// Apply the rules: name and description trimmed, 1–256 characters; quantity a whole
    /// number from 0 to 1,000,000; a price, if any, in `currency` from 0 to a million.
    pub fn validate(&self, currency: Currency) -> Result<NewItem, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = required_text(&mut errors, "name", self.name.as_deref());
        let description = required_text(&mut errors, "description", self.description.as_deref());
        let quantity = quantity(&mut errors, self.quantity.as_deref());
        let price_field = match self.price {
            PriceInput::Minor(_) => "price_minor",
            _ => "price",
        };
        let price = self
            .price
            .validate(currency)
            .map_err(|why| errors.insert(price_field, why))
            .ok();
        match (name, quantity, description, price) {
            (Some(name), Some(quantity), Some(description), Some(price_minor))
                if errors.is_empty() =>
            {
                Ok(NewItem {
                    name,
                    quantity,
                    description,
                    price_minor,
                })
            }
            _ => Err(errors),
        }
    }

    /// The input as a form shows it again (every field text).
    pub fn form_fields(&self, currency: Currency) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "quantity": self.quantity,
            "description": self.description,
            "price": self.price.shown(currency),
        })
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
    /// The page's number: where it starts when no cursor is given (an offset, which costs
    /// as much as the rows it skips), and what the page says it is.
    pub page: u32,
    pub per_page: u32,
    /// Matched case-insensitively against name and description; empty means everything.
    pub search: String,
    /// Where the page starts when it was reached by a link: next to an item, whatever the
    /// page's number (keyset pagination: as cheap ten thousand pages deep as on page one).
    pub from: Option<Seek>,
}

/// A page that starts next to a known item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// `?after=`: the items older than this one (the next page).
    Older(Cursor),
    /// `?before=`: the items newer than this one (the previous page).
    Newer(Cursor),
}

/// An item's place in the newest-first order, as a list link carries it: `{µs}.{id}`, the
/// time it was added in microseconds since 1970 and its id (ids break ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub date_added: DateTime<Utc>,
    pub id: ItemId,
}

impl Cursor {
    pub fn of(item: &Item) -> Cursor {
        Cursor {
            date_added: item.date_added,
            id: item.id,
        }
    }

    fn parse(text: &str, name: &str) -> Result<Cursor, String> {
        let parsed = text.split_once('.').and_then(|(micros, id)| {
            let date_added = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
            let id = id.parse().ok()?;
            Some(Cursor { date_added, id })
        });
        parsed.ok_or_else(|| {
            format!("{name} must be a position from a list link (like 1700000000000000.42), not {text:?}.")
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.date_added.timestamp_micros(), self.id)
    }
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            search: String::new(),
            from: None,
        }
    }
}

/// A list's parameters as they came in a query string, each as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListParams<'a> {
    pub page: Option<&'a str>,
    pub per_page: Option<&'a str>,
    pub q: Option<&'a str>,
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
}

impl ListQuery {
    /// Read the parameters of a list. Garbage is an error with a message; a `per_page`
    /// above the maximum is lowered to it. Control characters in the search are dropped.
    pub fn parse(params: ListParams<'_>) -> Result<Self, String> {
        let page = positive(params.page, "page")?.unwrap_or(1);
        let per_page = positive(params.per_page, "per_page")?
            .unwrap_or(DEFAULT_PER_PAGE)
            .min(MAX_PER_PAGE);
        let search: String = params
            .q
            .unwrap_or("")
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if search.chars().count() > MAX_SEARCH_CHARS {
            return Err(format!(
                "The search text is longer than {MAX_SEARCH_CHARS} characters."
            ));
        }
        let from = match (given(params.after), given(params.before)) {
            (None, None) => None,
            (Some(after), None) => Some(Seek::Older(Cursor::parse(after, "after")?)),
            (None, Some(before)) => Some(Seek::Newer(Cursor::parse(before, "before")?)),
            (Some(_), Some(_)) => return Err("Give after or before, not both.".to_owned()),
        };
        Ok(ListQuery {
            page,
            per_page,
            search,
            from,
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

    /// The search text as one FTS5 phrase (`"…"`, quotes doubled): with the trigram
    /// tokenizer, it matches the text anywhere in a name or description, ignoring case.
    pub fn fts_phrase(&self) -> String {
        format!("\"{}\"", self.search.replace('"', "\"\""))
    }

    /// Whether the search is long enough for a trigram index (three characters); a
    /// shorter one matches so many items that reading the list until a page is full is
    /// as quick.
    pub fn search_is_indexable(&self) -> bool {
        self.search.chars().count() >= 3
    }
}

/// A parameter that was sent with something in it.
fn given(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

fn positive(raw: Option<&str>, name: &str) -> Result<Option<u32>, String> {
    match given(raw) {
        None => Ok(None),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "{name} must be a whole number from 1 to 1000000, not {text:?}."
            )),
        },
    }
}

/// One page of items, and whether there are older (next) and newer (previous) ones.
#[derive(Debug, Clone)]
pub struct ItemPage {
    pub items: Vec<Item>,
    pub has_next: bool,
    pub has_prev: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, quantity: &str, description: &str) -> ItemInput {
        ItemInput {
            name: Some(name.into()),
            quantity: Some(quantity.into()),
            description: Some(description.into()),
            price: PriceInput::None,
        }
    }

    #[test]
    fn valid_input_is_trimmed() {
        let item = input("  Lamp ", " 3 ", "\tbrass\n")
            .validate(Currency::EUR)
            .unwrap();
        assert_eq!(
            item,
            NewItem {
                name: "Lamp".into(),
                quantity: 3,
                description: "brass".into(),
                price_minor: None,
            }
        );
    }

    #[test]
    fn a_price_is_typed_or_sent_in_minor_units_and_empty_means_not_for_sale() {
        let mut typed = input("a", "1", "b");
        typed.price = PriceInput::Typed("12.50".into());
        assert_eq!(
            typed.validate(Currency::EUR).unwrap().price_minor,
            Some(1250)
        );
        typed.price = PriceInput::Typed(" ".into());
        assert_eq!(typed.validate(Currency::EUR).unwrap().price_minor, None);
        typed.price = PriceInput::Typed("12.505".into());
        let errors = typed.validate(Currency::EUR).unwrap_err();
        assert!(errors["price"].contains("2 decimals"), "{errors:?}");
        typed.price = PriceInput::Minor(-1);
        assert!(typed
            .validate(Currency::EUR)
            .unwrap_err()
            .contains_key("price_minor"));
        typed.price = PriceInput::Minor(99);
        assert_eq!(typed.validate(Currency::EUR).unwrap().price_minor, Some(99));
        assert_eq!(typed.form_fields(Currency::EUR)["price"], "0.99");
    }

    #[test]
    fn every_bad_field_gets_a_message() {
        let errors = input("   ", "-1", "").validate(Currency::EUR).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors["name"].contains("Please enter"));
        assert!(errors["quantity"].contains("between 0 and 1000000"));
        assert!(errors["description"].contains("Please enter"));
    }

    #[test]
    fn limits_are_inclusive() {
        let longest = "é".repeat(MAX_TEXT_CHARS);
        assert!(input(&longest, "1000000", "x")
            .validate(Currency::EUR)
            .is_ok());
        assert!(input("x", "0", &longest).validate(Currency::EUR).is_ok());
        let errors = input(&format!("{longest}a"), "1000001", "x")
            .validate(Currency::EUR)
            .unwrap_err();
        assert!(errors["name"].contains("257 characters"));
        assert!(errors.contains_key("quantity"));
    }

    #[test]
    fn quantity_must_be_a_whole_number() {
        for bad in ["abc", "1.5", "1e3", "99999999999999999999"] {
            let errors = input("a", bad, "b").validate(Currency::EUR).unwrap_err();
            assert!(errors.contains_key("quantity"), "{bad}");
        }
    }

    #[test]
    fn missing_fields_are_errors() {
        let errors = ItemInput::default().validate(Currency::EUR).unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["description", "name", "quantity"]
        );
    }

    #[test]
    fn list_query_defaults_and_clamps() {
        let parse = |page, per_page, q| {
            ListQuery::parse(ListParams {
                page,
                per_page,
                q,
                ..ListParams::default()
            })
        };
        assert_eq!(parse(None, None, None).unwrap(), ListQuery::default());
        let q = parse(Some("3"), Some("5000"), Some(" la\u{1f}mp ")).unwrap();
        assert_eq!(
            (q.page, q.per_page, q.search.as_str()),
            (3, MAX_PER_PAGE, "lamp")
        );
        assert_eq!(q.offset(), 2000);
        assert!(parse(Some("0"), None, None).is_err());
        assert!(parse(None, Some("ten"), None).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            date_added: DateTime::from_timestamp_micros(1_763_852_820_123_456).unwrap(),
            id: crate::ids::ItemId(42),
        };
        assert_eq!(cursor.to_string(), "1763852820123456.42");
        let text = cursor.to_string();
        let after = ListQuery::parse(ListParams {
            after: Some(&text),
            ..ListParams::default()
        })
        .unwrap();
        assert_eq!(after.from, Some(Seek::Older(cursor)));
        let before = ListQuery::parse(ListParams {
            before: Some(&text),
            page: Some("7"),
            ..ListParams::default()
        })
        .unwrap();
        assert_eq!((before.from, before.page), (Some(Seek::Newer(cursor)), 7));
        for bad in ["42", "x.1", "1.0", "1.-3", "99999999999999999999.1"] {
            let error = ListQuery::parse(ListParams {
                after: Some(bad),
                ..ListParams::default()
            })
            .unwrap_err();
            assert!(error.starts_with("after must be a position"), "{error}");
        }
        let both = ListQuery::parse(ListParams {
            after: Some(&text),
            before: Some(&text),
            ..ListParams::default()
        });
        assert!(both.is_err());
    }

    #[test]
    fn fts_phrases_quote_the_search() {
        let q = ListQuery::parse(ListParams {
            q: Some(r#"5" "pipe"#),
            ..ListParams::default()
        })
        .unwrap();
        assert_eq!(q.fts_phrase(), r#""5"" ""pipe""#);
        assert!(q.search_is_indexable());
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
        let q = ListQuery::parse(ListParams {
            q: Some(r"50%_off\"),
            ..ListParams::default()
        })
        .unwrap();
        assert_eq!(q.like_pattern(), r"%50\%\_off\\%");
    }
}
