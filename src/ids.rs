//! The ids of shop's records, one type each, so that a user's id is never passed where an
//! item's belongs. Each is the database's integer, and shows (in JSON, in a URL, in the
//! journal) as that integer.

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NotAnId;

            /// A positive integer: no record has id 0 or below.
            fn from_str(text: &str) -> Result<Self, NotAnId> {
                match text.parse::<i64>() {
                    Ok(id) if id > 0 => Ok($name(id)),
                    _ => Err(NotAnId),
                }
            }
        }
    };
}

/// What names no record: not a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an id is a positive whole number")]
pub struct NotAnId;

id_type! {
    /// A user's id.
    UserId
}

id_type! {
    /// An item's id.
    ItemId
}

id_type! {
    /// An API token's id (as listed on the account page and by `shop token list`).
    TokenId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_integers_and_show_as_such() {
        assert_eq!("42".parse::<ItemId>(), Ok(ItemId(42)));
        assert!("0".parse::<ItemId>().is_err());
        assert!("-1".parse::<UserId>().is_err());
        assert!("abc".parse::<TokenId>().is_err());
        assert_eq!(ItemId(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&UserId(3)).unwrap(), "3");
    }
}
