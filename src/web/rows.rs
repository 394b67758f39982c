//! The list page's table rows, written straight into the page's buffer: on the 1,000-row
//! page this is most of an instance's work, so it avoids what the template engine and
//! `format!` cost per row (a JSON value per row, an allocation per escaped field, the
//! formatting machinery for every number).

use chrono::{Datelike, Timelike};

use crate::db::ListedItem;
use crate::money::Currency;

/// About what one row takes, to size the buffer once.
pub const ROW_BYTES: usize = 176;

/// Append the `<tr>` of `item` to `html`. The cells' and rows' end tags are left out, as
/// HTML allows: a fifth of the bytes of a list page, for nginx and the browser to carry.
pub fn write_row(html: &mut String, item: &ListedItem<'_>, currency: Currency) {
    html.push_str("<tr><td><a href=\"/items/");
    push_int(html, item.id.0);
    html.push_str("\">");
    push_escaped(html, item.name);
    html.push_str("</a><td>");
    push_int(html, i64::from(item.quantity));
    html.push_str("<td>");
    match item.price_minor {
        Some(price) => currency.write_shown(html, price),
        None => html.push_str("not for sale"),
    }
    html.push_str("<td>");
    push_escaped(html, item.description);
    html.push_str("<td>");
    if let Some(seller) = item.seller {
        push_escaped(html, seller);
    }
    html.push_str("<td>");
    push_time(html, &item.date_added);
    html.push('\n');
}

/// `<time datetime="2026-11-23T21:07:00Z">2026-11-23 21:07 UTC</time>`: when the item was
/// added, for machines and for people.
pub fn push_time(html: &mut String, d: &chrono::DateTime<chrono::Utc>) {
    let minute = Minute::of(d);
    let minute = minute.as_str();
    // "2026-11-23T21:07": the attribute adds the seconds, people see a space for the T.
    let (date, time) = minute.split_at(minute.len() - 6);
    html.push_str("<time datetime=\"");
    html.push_str(minute);
    html.push(':');
    push_2(html, d.second());
    html.push_str("Z\">");
    html.push_str(date);
    html.push(' ');
    html.push_str(&time[1..]);
    html.push_str(" UTC</time>");
}

/// "YYYY-MM-DDTHH:MM", on the stack (a year of other than four digits takes the slow way).
enum Minute {
    Short([u8; 16]),
    Long(String),
}

impl Minute {
    fn of(d: &chrono::DateTime<chrono::Utc>) -> Minute {
        let year = d.year();
        if !(0..10_000).contains(&year) {
            return Minute::Long(d.format("%Y-%m-%dT%H:%M").to_string());
        }
        let mut text = *b"0000-00-00T00:00";
        let year = year as u32;
        for (at, n) in [
            (0, year / 100),
            (2, year % 100),
            (5, d.month()),
            (8, d.day()),
            (11, d.hour()),
            (14, d.minute()),
        ] {
            text[at] = b'0' + (n / 10) as u8;
            text[at + 1] = b'0' + (n % 10) as u8;
        }
        Minute::Short(text)
    }

    fn as_str(&self) -> &str {
        match self {
            // Only ASCII digits and separators were written.
            Minute::Short(text) => std::str::from_utf8(text).unwrap_or_default(),
            Minute::Long(text) => text,
        }
    }
}

/// Two digits, zero-padded.
fn push_2(html: &mut String, n: u32) {
    html.push(char::from(b'0' + (n / 10 % 10) as u8));
    html.push(char::from(b'0' + (n % 10) as u8));
}

fn push_int(html: &mut String, n: i64) {
    html.push_str(itoa::Buffer::new().format(n));
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in element content and in quoted
/// attributes. Most text has none of them and is copied in one piece.
pub fn push_escaped(html: &mut String, text: &str) {
    let special = |b: &u8| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'');
    let mut rest = text;
    // (Bytes: the five are ASCII, so `at` is always on a character boundary.)
    while let Some(at) = rest.as_bytes().iter().position(special) {
        html.push_str(&rest[..at]);
        html.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#x27;",
        });
        rest = &rest[at + 1..];
    }
    html.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item<'a>(name: &'a str, description: &'a str, micros: i64) -> ListedItem<'a> {
        ListedItem {
            id: crate::ids::ItemId(42),
            name,
            quantity: 1000000,
            description,
            date_added: chrono::DateTime::from_timestamp_micros(micros).unwrap(),
            owner_id: Some(crate::ids::UserId(7)),
            seller: Some("ann<"),
            price_minor: Some(1250),
            version: 1,
        }
    }

    #[test]
    fn a_row_has_every_field_escaped() {
        let mut html = String::new();
        write_row(
            &mut html,
            &item("<b>Lamp</b> & \"co\"", "it's", 1_763_932_020_999_999),
            Currency::EUR,
        );
        assert_eq!(
            html,
            "<tr><td><a href=\"/items/42\">&lt;b&gt;Lamp&lt;/b&gt; &amp; &quot;co&quot;</a>\
             <td>1000000<td>12.50 EUR<td>it&#x27;s<td>ann&lt;<td><time datetime=\"2025-11-23T21:07:00Z\">\
             2025-11-23 21:07 UTC</time>\n"
        );
    }

    #[test]
    fn dates_are_padded() {
        let mut html = String::new();
        push_time(&mut html, &item("a", "b", 0).date_added);
        assert_eq!(
            html,
            "<time datetime=\"1970-01-01T00:00:00Z\">1970-01-01 00:00 UTC</time>"
        );
    }

    #[test]
    fn plain_text_is_copied_whole() {
        let mut html = String::new();
        push_escaped(&mut html, "plain text, no markup");
        assert_eq!(html, "plain text, no markup");
    }
}
