//! The ids of shop's records, one type each, so that a user's id is never passed where an
//! item's belongs. Each is the database's integer, and shows (in JSON, in a URL, in the
//! journal) as that integer.

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        // The database's integer column, in both backends (what sqlx's
        // `#[sqlx(transparent)]` derives, without its proc macro).
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            i64: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <i64 as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <i64 as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            i64: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <i64 as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            i64: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <i64 as sqlx::Decode<'r, DB>>::decode(value).map($name)
            }
        }

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
    /// An order's id.
    OrderId
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
