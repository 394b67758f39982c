//! Money: amounts are whole numbers of a currency's minor unit (cents), never floats; the
//! shop's one currency (an ISO 4217 code in `sales.currency`) says how many digits the
//! minor unit has. Prices are parsed exactly from what a person types (`12.50`) and
//! written the way the currency is (`12.50 EUR`, `1200 JPY`) only at the edge.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The highest price an item may have, in major units (a million: shop is not for houses).
pub const MAX_PRICE_MAJOR: i64 = 1_000_000;

/// A currency: its ISO 4217 code and the digits of its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: &'static str,
    digits: u32,
}

/// The ISO 4217 currencies shop knows, with the digits of their minor units. (Those with
/// three digits or none are the ones that most need it said.)
const CURRENCIES: &[(&str, u32)] = &[
    ("EUR", 2),
    ("USD", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("HUF", 2),
    ("RON", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("NZD", 2),
    ("INR", 2),
    ("BRL", 2),
    ("MXN", 2),
    ("ZAR", 2),
    ("CNY", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("ISK", 0),
    ("CLP", 0),
    ("VND", 0),
    ("BHD", 3),
    ("KWD", 3),
    ("JOD", 3),
    ("OMR", 3),
    ("TND", 3),
];

impl Currency {
    pub const EUR: Currency = Currency {
        code: "EUR",
        digits: 2,
    };

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// How many minor units make one major unit (100 for EUR, 1 for JPY).
    fn scale(&self) -> i64 {
        10_i64.pow(self.digits)
    }

    /// The highest price in minor units.
    pub fn max_minor(&self) -> i64 {
        MAX_PRICE_MAJOR * self.scale()
    }

    /// `minor` written as the currency is, without the code: `12.50`, `1200`, `1.250`.
    pub fn amount(&self, minor: i64) -> String {
        let mut text = String::with_capacity(16);
        self.write_amount(&mut text, minor);
        text
    }

    /// `amount`, written onto `out` (the list writes one a row: no allocation of its own).
    fn write_amount(&self, out: &mut String, minor: i64) {
        if minor < 0 {
            out.push('-');
        }
        let minor = minor.unsigned_abs();
        let scale = self.scale().unsigned_abs();
        let mut digits = itoa::Buffer::new();
        if self.digits == 0 {
            out.push_str(digits.format(minor));
            return;
        }
        out.push_str(digits.format(minor / scale));
        out.push('.');
        let fraction = digits.format(minor % scale);
        for _ in fraction.len()..self.digits as usize {
            out.push('0');
        }
        out.push_str(fraction);
    }

    /// `minor` with the code: `12.50 EUR`.
    pub fn show(&self, minor: i64) -> String {
        let mut text = String::with_capacity(20);
        self.write_shown(&mut text, minor);
        text
    }

    /// `show`, written onto `out`.
    pub fn write_shown(&self, out: &mut String, minor: i64) {
        self.write_amount(out, minor);
        out.push(' ');
        out.push_str(self.code);
    }

    /// Read a price as a person types it: `12`, `12.5`, `12.50` (a comma for the point is
    /// taken too), at most as many decimals as the currency has, from 0 to the maximum.
    pub fn parse_price(&self, text: &str) -> Result<i64, String> {
        let text = text.trim();
        let unreadable = || {
            let example = self.amount(1250 * self.scale() / 100);
            format!("The price must be an amount like {example}, not {text:?}.")
        };
        if text.is_empty() {
            return Err("Please enter a price.".to_owned());
        }
        let (whole, fraction) = match text.split_once(['.', ',']) {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || whole.len() > 12 {
            return Err(unreadable());
        }
        if text.contains(['.', ',']) && fraction.is_empty() {
            return Err(unreadable());
        }
        if fraction.len() > self.digits as usize {
            return Err(match self.digits {
                0 => format!("{} prices are whole numbers, without decimals.", self.code),
                n => format!("{} prices have at most {n} decimals.", self.code),
            });
        }
        let whole: i64 = whole.parse().map_err(|_| unreadable())?;
        let padded = format!("{fraction:0<width$}", width = self.digits as usize);
        let fraction: i64 = if padded.is_empty() {
            0
        } else {
            padded.parse().map_err(|_| unreadable())?
        };
        let minor = whole
            .checked_mul(self.scale())
            .and_then(|m| m.checked_add(fraction))
            .ok_or_else(unreadable)?;
        self.check_minor(minor)
    }

    /// A price given in minor units (the API's `price_minor`): from 0 to the maximum.
    pub fn check_minor(&self, minor: i64) -> Result<i64, String> {
        if (0..=self.max_minor()).contains(&minor) {
            Ok(minor)
        } else {
            Err(format!(
                "The price must be between 0 and {}.",
                self.show(self.max_minor())
            ))
        }
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(code: &str) -> Result<Currency, String> {
        let wanted = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == wanted)
            .map(|&(code, digits)| Currency { code, digits })
            .ok_or_else(|| {
                format!("{code:?} is not an ISO 4217 currency code shop knows (e.g. EUR, USD, GBP, JPY)")
            })
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        let code = String::deserialize(deserializer)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpy() -> Currency {
        "jpy".parse().unwrap()
    }

    #[test]
    fn prices_are_parsed_exactly() {
        let eur = Currency::EUR;
        assert_eq!(eur.parse_price("12.50"), Ok(1250));
        assert_eq!(eur.parse_price(" 12.5 "), Ok(1250));
        assert_eq!(eur.parse_price("12"), Ok(1200));
        assert_eq!(eur.parse_price("0,99"), Ok(99));
        assert_eq!(eur.parse_price("0.1"), Ok(10));
        assert_eq!(eur.parse_price("1000000"), Ok(100_000_000));
        assert!(eur.parse_price("1000000.01").is_err());
        assert!(eur
            .parse_price("12.505")
            .unwrap_err()
            .contains("at most 2 decimals"));
        for bad in [
            "",
            "-1",
            "1e3",
            "12.",
            ".5",
            "1.2.3",
            "12 50",
            "NaN",
            "99999999999999999",
        ] {
            assert!(eur.parse_price(bad).is_err(), "{bad:?}");
        }
        assert_eq!(jpy().parse_price("1200"), Ok(1200));
        assert!(jpy()
            .parse_price("12.5")
            .unwrap_err()
            .contains("whole numbers"));
        let bhd: Currency = "BHD".parse().unwrap();
        assert_eq!(bhd.parse_price("1.25"), Ok(1250));
    }

    #[test]
    fn amounts_are_written_as_the_currency_is() {
        assert_eq!(Currency::EUR.show(1250), "12.50 EUR");
        assert_eq!(Currency::EUR.show(5), "0.05 EUR");
        assert_eq!(Currency::EUR.amount(0), "0.00");
        assert_eq!(jpy().show(1200), "1200 JPY");
        assert_eq!("BHD".parse::<Currency>().unwrap().show(1250), "1.250 BHD");
    }

    #[test]
    fn unknown_codes_are_refused() {
        assert!("EURO".parse::<Currency>().is_err());
        assert!("XYZ".parse::<Currency>().is_err());
        assert_eq!("eur".parse::<Currency>(), Ok(Currency::EUR));
    }
}
