//! Who may do what, decided in one place. Each rule is one pure function of a user and
//! what they act on (`Rule::allows`); passing it is the only way to get a `Permit`, and
//! the store's writes take the permit, so a handler that forgot to ask does not compile:
//!
//! ```compile_fail,E0308
//! # async fn f(store: shop::db::Store, item: shop::items::Item, new: shop::items::NewItem) {
//! // No permit, no change: `update_item` takes a `Permit<ChangeItem>`, not an id.
//! store.update_item(item.id, &new).await;
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
//!     store.update_item(&permit, &new).await.unwrap();
//! }
//! # }
//! ```
//!
//! A rule also says how a refusal shows: `Forbidden` (403, "this is another seller's")
//! for what the user may see but not change, `Hidden` (404) for what they may not even
//! know exists. Orders add their rules (see, cancel, hand over) as more `Rule`s.

use std::marker::PhantomData;

use crate::accounts::User;
use crate::items::Item;

/// One rule of who may do what to a `Subject`.
pub trait Rule {
    type Subject;
    /// Whether `user` may do it to `subject`.
    fn allows(user: &User, subject: &Self::Subject) -> bool;
    /// How a refusal is answered.
    fn refusal() -> Refusal;
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
            Err((by, R::refusal()))
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

    fn refusal() -> Refusal {
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
        }
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
