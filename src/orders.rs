//! The domain of buying: an order (one item today, its lines kept apart so a basket can
//! come), its states (`placed` → `handed_over`, or `placed` → `cancelled`), and what a
//! buyer sends to place one. Who may see or move an order is `access`'s; taking the stock
//! and moving the state, each exactly once, is the store's (`db::orders`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{ItemId, OrderId, UserId};
use crate::items::FieldErrors;
use crate::money::Currency;

/// The most of one item one order may take.
pub const MAX_ORDER_QUANTITY: i32 = 1_000_000;

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Bought: the stock is taken; the seller hands it over, or someone cancels.
    Placed,
    /// Sold and handed over (payment is settled between buyer and seller): final.
    HandedOver,
    /// Cancelled before hand-over: its stock went back. Final.
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Placed => "placed",
            OrderState::HandedOver => "handed_over",
            OrderState::Cancelled => "cancelled",
        }
    }

    /// The state a stored `state` column names.
    pub fn parse(text: &str) -> Option<OrderState> {
        match text {
            "placed" => Some(OrderState::Placed),
            "handed_over" => Some(OrderState::HandedOver),
            "cancelled" => Some(OrderState::Cancelled),
            _ => None,
        }
    }

    /// How a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            OrderState::Placed => "placed, waiting for hand-over",
            OrderState::HandedOver => "handed over",
            OrderState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order as stored, with its one line: what was bought, copied at the moment of
/// purchase (later edits, price changes or the item's deletion change nothing here).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub state: OrderState,
    pub item_id: ItemId,
    pub item_name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub total_minor: i64,
    pub currency: String,
    pub buyer: String,
    pub seller: String,
    #[serde(skip)]
    pub buyer_id: UserId,
    #[serde(skip)]
    pub seller_id: UserId,
    pub placed_at: DateTime<Utc>,
    pub handed_over_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// What a buyer asks for, checked: this many of the item, at the unit price they saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRequest {
    pub item_id: ItemId,
    pub quantity: i32,
    pub price_minor: i64,
}

/// What a buyer sent, each field raw (the form's text, the API's JSON as text).
#[derive(Debug, Clone, Default)]
pub struct OrderInput {
    pub item_id: Option<String>,
    pub quantity: Option<String>,
    pub price_minor: Option<String>,
}

impl OrderInput {
    /// A known item id, a quantity from 1 to a million, a price of 0 or more.
    pub fn validate(&self) -> Result<OrderRequest, FieldErrors> {
        let mut errors = FieldErrors::new();
        let text = |raw: &Option<String>| raw.as_deref().unwrap_or("").trim().to_owned();
        let item_id = text(&self.item_id).parse::<ItemId>().ok();
        if item_id.is_none() {
            errors.insert("item_id", "Say which item to buy (its id).".to_owned());
        }
        let quantity = match text(&self.quantity).parse::<i64>() {
            Ok(n) if (1..=i64::from(MAX_ORDER_QUANTITY)).contains(&n) => Some(n as i32),
            Ok(_) => {
                errors.insert("quantity", "Buy at least 1.".to_owned());
                None
            }
            Err(_) => {
                errors.insert(
                    "quantity",
                    "The quantity must be a whole number, 1 or more.".to_owned(),
                );
                None
            }
        };
        let price_minor = match text(&self.price_minor).parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                errors.insert(
                    "price_minor",
                    "Send the unit price you saw, in minor units (cents).".to_owned(),
                );
                None
            }
        };
        match (item_id, quantity, price_minor) {
            (Some(item_id), Some(quantity), Some(price_minor)) => Ok(OrderRequest {
                item_id,
                quantity,
                price_minor,
            }),
            _ => Err(errors),
        }
    }
}

/// Why the stock could not be taken: each says, in a sentence, what the buyer can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTaken {
    SoldOut,
    OnlyLeft(i32),
    NotForSale,
    PriceChanged(i64),
    /// The item was deleted meanwhile.
    Gone,
}

impl NotTaken {
    /// Why the stock of `item` (as it is now) could not give `wanted` at `seen`.
    pub fn explain(quantity: i32, price: Option<i64>, wanted: &OrderRequest) -> NotTaken {
        match price {
            None => NotTaken::NotForSale,
            Some(price) if price != wanted.price_minor => NotTaken::PriceChanged(price),
            Some(_) if quantity == 0 => NotTaken::SoldOut,
            Some(_) => NotTaken::OnlyLeft(quantity),
        }
    }

    pub fn sentence(&self, currency: Currency) -> String {
        match self {
            NotTaken::SoldOut => "Sold out: none are left.".to_owned(),
            NotTaken::OnlyLeft(n) => format!("Only {n} left: buy at most {n}."),
            NotTaken::NotForSale => "This item is not for sale (it has no price).".to_owned(),
            NotTaken::PriceChanged(price) => format!(
                "The price changed to {}: look again, and buy at the new price if you still want it.",
                currency.show(*price)
            ),
            NotTaken::Gone => "This item is no longer for sale: its seller deleted it.".to_owned(),
        }
    }

    /// The metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            NotTaken::SoldOut | NotTaken::OnlyLeft(_) => "stock",
            NotTaken::NotForSale | NotTaken::Gone => "not_for_sale",
            NotTaken::PriceChanged(_) => "price",
        }
    }
}

/// Why a state change did not happen: the order is no longer `placed`.
pub fn not_placed_sentence(state: OrderState, wanted: &str) -> String {
    match state {
        OrderState::Placed => format!("The order could not be {wanted}; try again."),
        OrderState::HandedOver => {
            format!("This order was handed over already: it can no longer be {wanted}.")
        }
        OrderState::Cancelled => {
            format!("This order was cancelled already: it can no longer be {wanted}.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(item: &str, quantity: &str, price: &str) -> OrderInput {
        OrderInput {
            item_id: Some(item.into()),
            quantity: Some(quantity.into()),
            price_minor: Some(price.into()),
        }
    }

    #[test]
    fn a_request_names_an_item_a_quantity_and_the_price_seen() {
        assert_eq!(
            input("3", "2", "1250").validate().unwrap(),
            OrderRequest {
                item_id: ItemId(3),
                quantity: 2,
                price_minor: 1250
            }
        );
        let errors = input("x", "0", "-5").validate().unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["item_id", "price_minor", "quantity"]
        );
        assert!(OrderInput::default().validate().is_err());
        assert!(input("1", "1.5", "1").validate().is_err());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let wanted = input("1", "3", "1250").validate().unwrap();
        let eur = Currency::EUR;
        assert_eq!(
            NotTaken::explain(2, Some(1250), &wanted).sentence(eur),
            "Only 2 left: buy at most 2."
        );
        assert_eq!(NotTaken::explain(0, Some(1250), &wanted), NotTaken::SoldOut);
        assert!(NotTaken::explain(5, Some(1400), &wanted)
            .sentence(eur)
            .contains("changed to 14.00 EUR"));
        assert_eq!(NotTaken::explain(5, None, &wanted), NotTaken::NotForSale);
        assert!(not_placed_sentence(OrderState::HandedOver, "cancelled").contains("handed over"));
    }
}
