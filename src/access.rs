//! Who may do what, decided in one place. Each rule is one pure function of a user and
//! what they act on (`Rule::allows`); passing it is the only way to get a `Permit`, and
//! the store's writes take the permit, so a handler that forgot to ask does not compile:
//!
//! ```compile_fail,E0308
//! # async fn f(store: shop::db::Store, item: shop::items::Item, new: shop::items::NewItem) {
//! // No permit, no change: `update_item` takes a `Permit<ChangeItem>`, not an id.
//! store.update_item(item.id, &new, None).await;
//! # }
//! ```
//!
//! ```compile_fail,E0451
//! # fn f(user: shop::accounts::User, item: shop::items::Item) {
//! // Nor can one be made by hand: its fields are this module's.
//! let permit = shop::access::Permit::<shop::access::ChangeItem> { by: user, subject: item, rule: std::marker::PhantomData };
//! # }
//! ```
//!
//! What compiles is asking first:
//!
//! ```no_run
//! # async fn f(store: shop::db::Store, user: shop::accounts::User, item: shop::items::Item, new: shop::items::NewItem) {
//! use shop::access::{ChangeItem, Permit};
//! if let Ok(permit) = Permit::<ChangeItem>::check(user, item) {
//!     store.update_item(&permit, &new, None).await.unwrap();
//! }
//! # }
//! ```
//!
//! A rule also says how a refusal shows: `Forbidden` (403, "this is another seller's")
//! for what the user may see but not change, `Hidden` (404) for what they may not even
//! know exists. Buying adds its rules (buy an item; see, cancel, hand over an order).

use std::marker::PhantomData;

use crate::accounts::User;
use crate::items::Item;
use crate::orders::Order;

/// One rule of who may do what to a `Subject`.
pub trait Rule {
    type Subject;
    /// Whether `user` may do it to `subject`.
    fn allows(user: &User, subject: &Self::Subject) -> bool;
    /// How a refusal of `user` is answered.
    fn refusal(user: &User, subject: &Self::Subject) -> Refusal;
}

/// How a refused action is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user may see the thing but not do this to it (403), and is told why.
    Forbidden(&'static str),
    /// The user may not know the thing exists (404: ids cannot be enumerated); names it.
    Hidden(&'static str),
}

/// Proof that `by` may do `R` to `subject`: only `Permit::check` makes one.
#[derive(Debug)]
pub struct Permit<R: Rule> {
    by: User,
    subject: R::Subject,
    rule: PhantomData<R>,
}

impl<R: Rule> Permit<R> {
    /// The permit, when the rule allows it; the refusal otherwise.
    pub fn check(by: User, subject: R::Subject) -> Result<Permit<R>, (User, Refusal)> {
        if R::allows(&by, &subject) {
            Ok(Permit {
                by,
                subject,
                rule: PhantomData,
            })
        } else {
            let refusal = R::refusal(&by, &subject);
            Err((by, refusal))
        }
    }

    /// Who is allowed.
    pub fn by(&self) -> &User {
        &self.by
    }

    /// What they are allowed to act on, as it was when the rule was asked.
    pub fn subject(&self) -> &R::Subject {
        &self.subject
    }
}

/// Changing (editing or deleting) an item: its seller, or an admin. Items made before
/// accounts existed have no seller: only an admin may change them. A disabled user may
/// change nothing (their sessions and tokens are refused before this is asked anyway).
#[derive(Debug)]
pub struct ChangeItem;

impl Rule for ChangeItem {
    type Subject = Item;

    fn allows(user: &User, item: &Item) -> bool {
        may_change(user, item)
    }

    fn refusal(_: &User, _: &Item) -> Refusal {
        Refusal::Forbidden(
            "This item is another seller's: only its seller (or an admin) may change or delete it.",
        )
    }
}

/// The rule of `ChangeItem`, for what only shows a button (the item page's edit and
/// delete links): the same function the permit asks.
pub fn may_change(user: &User, item: &Item) -> bool {
    !user.disabled && (user.is_admin || item.owner_id == Some(user.id))
}

/// Buying an item: any user but its seller (a disabled user buys nothing). Items from
/// before accounts have no seller to buy from. Whether there is stock at the price seen
/// is the store's to say, when it takes the stock.
#[derive(Debug)]
pub struct BuyItem;

impl Rule for BuyItem {
    type Subject = Item;

    fn allows(user: &User, item: &Item) -> bool {
        may_buy(user, item)
    }

    fn refusal(user: &User, item: &Item) -> Refusal {
        Refusal::Forbidden(if user.disabled {
            "This account is disabled: it cannot buy."
        } else if item.owner_id == Some(user.id) {
            "This is your own item: you cannot buy it."
        } else {
            "This item has no seller to buy from (it was added before accounts)."
        })
    }
}

/// The rule of `BuyItem`, for what only shows the Buy form.
pub fn may_buy(user: &User, item: &Item) -> bool {
    !user.disabled && item.owner_id.is_some_and(|seller| seller != user.id)
}

/// Whether `user` is the order's buyer, its seller or an admin: the only ones who may
/// know it exists.
fn party_to(user: &User, order: &Order) -> bool {
    !user.disabled && (user.is_admin || order.buyer_id == user.id || order.seller_id == user.id)
}

/// Seeing an order: its buyer, its seller, an admin. Anyone else is told there is no such
/// order (404), so order ids cannot be enumerated.
#[derive(Debug)]
pub struct SeeOrder;

impl Rule for SeeOrder {
    type Subject = Order;

    fn allows(user: &User, order: &Order) -> bool {
        party_to(user, order)
    }

    fn refusal(_: &User, _: &Order) -> Refusal {
        Refusal::Hidden("order")
    }
}

/// Cancelling an order (before hand-over, which the store checks as it changes it): its
/// buyer, its seller or an admin.
#[derive(Debug)]
pub struct CancelOrder;

impl Rule for CancelOrder {
    type Subject = Order;

    fn allows(user: &User, order: &Order) -> bool {
        party_to(user, order)
    }

    fn refusal(_: &User, _: &Order) -> Refusal {
        Refusal::Hidden("order")
    }
}

/// Handing an order over (sold; payment settled between them): its seller or an admin.
/// The buyer is told why not; anyone else is told there is no such order.
#[derive(Debug)]
pub struct HandOverOrder;

impl Rule for HandOverOrder {
    type Subject = Order;

    fn allows(user: &User, order: &Order) -> bool {
        may_hand_over(user, order)
    }

    fn refusal(user: &User, order: &Order) -> Refusal {
        if party_to(user, order) {
            Refusal::Forbidden("Only the seller (or an admin) hands an order over.")
        } else {
            Refusal::Hidden("order")
        }
    }
}

/// The rule of `HandOverOrder`, for what only shows its button.
pub fn may_hand_over(user: &User, order: &Order) -> bool {
    party_to(user, order) && (user.is_admin || order.seller_id == user.id)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ids::{ItemId, UserId};

    fn user(id: i64, is_admin: bool) -> User {
        User {
            id: UserId(id),
            username: format!("u{id}"),
            is_admin,
            disabled: false,
        }
    }

    fn item(owner_id: Option<i64>) -> Item {
        Item {
            id: ItemId(1),
            name: "n".into(),
            quantity: 1,
            description: "d".into(),
            date_added: Utc::now(),
            owner_id: owner_id.map(UserId),
            seller: None,
            price_minor: Some(100),
            version: 1,
        }
    }

    fn order(buyer: i64, seller: i64) -> Order {
        Order {
            id: crate::ids::OrderId(1),
            state: crate::orders::OrderState::Placed,
            item_id: ItemId(1),
            item_name: "n".into(),
            quantity: 1,
            unit_price_minor: 100,
            total_minor: 100,
            currency: "EUR".into(),
            buyer: format!("u{buyer}"),
            seller: format!("u{seller}"),
            buyer_id: UserId(buyer),
            seller_id: UserId(seller),
            placed_at: Utc::now(),
            handed_over_at: None,
            cancelled_at: None,
        }
    }

    #[test]
    fn anyone_but_the_seller_buys_and_a_disabled_user_nobody() {
        assert!(may_buy(&user(2, false), &item(Some(1))));
        assert!(!may_buy(&user(1, false), &item(Some(1))));
        assert!(!may_buy(&user(1, true), &item(None)));
        let mut disabled = user(2, false);
        disabled.disabled = true;
        assert!(!may_buy(&disabled, &item(Some(1))));
        let (_, refusal) = Permit::<BuyItem>::check(user(1, false), item(Some(1))).unwrap_err();
        assert!(matches!(refusal, Refusal::Forbidden(why) if why.contains("your own item")));
    }

    #[test]
    fn an_order_is_known_to_its_parties_only_and_handed_over_by_its_seller() {
        let placed = order(1, 2);
        for (who, see, hand_over) in [
            (user(1, false), true, false),
            (user(2, false), true, true),
            (user(3, true), true, true),
            (user(3, false), false, false),
        ] {
            assert_eq!(SeeOrder::allows(&who, &placed), see, "{}", who.username);
            assert_eq!(CancelOrder::allows(&who, &placed), see, "{}", who.username);
            assert_eq!(may_hand_over(&who, &placed), hand_over, "{}", who.username);
        }
        let (_, buyer) =
            Permit::<HandOverOrder>::check(user(1, false), placed.clone()).unwrap_err();
        assert!(matches!(buyer, Refusal::Forbidden(_)));
        let (_, stranger) =
            Permit::<HandOverOrder>::check(user(3, false), placed.clone()).unwrap_err();
        assert_eq!(stranger, Refusal::Hidden("order"));
        let (_, stranger) = Permit::<SeeOrder>::check(user(3, false), placed).unwrap_err();
        assert_eq!(stranger, Refusal::Hidden("order"));
    }

    #[test]
    fn sellers_change_their_own_items_and_admins_any() {
        assert!(may_change(&user(1, false), &item(Some(1))));
        assert!(!may_change(&user(2, false), &item(Some(1))));
        assert!(!may_change(&user(2, false), &item(None)));
        assert!(may_change(&user(2, true), &item(None)));
        assert!(may_change(&user(2, true), &item(Some(1))));
        let mut disabled = user(1, true);
        disabled.disabled = true;
        assert!(!may_change(&disabled, &item(Some(1))));
    }

    #[test]
    fn a_permit_is_given_exactly_when_the_rule_allows() {
        let permit = Permit::<ChangeItem>::check(user(1, false), item(Some(1))).unwrap();
        assert_eq!(permit.by().id, UserId(1));
        assert_eq!(permit.subject().owner_id, Some(UserId(1)));
        let (who, refusal) =
            Permit::<ChangeItem>::check(user(2, false), item(Some(1))).unwrap_err();
        assert_eq!(who.id, UserId(2));
        assert!(matches!(refusal, Refusal::Forbidden(why) if why.contains("another seller")));
    }
}
