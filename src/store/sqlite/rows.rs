//! Reading rows into hub's types: a struct by its columns' names, a tuple or a single value by
//! position. Every query outside the writer goes through `all`, `one` or `optional`, which keep the
//! statement prepared.

use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, Params, Row};

use crate::domain::Source;

pub(in crate::store) trait FromRow: Sized {
    fn from_row(r: &Row) -> rusqlite::Result<Self>;
}

/// Implements [`FromRow`] for a struct whose fields are named as the query's columns.
macro_rules! by_name {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::store::sqlite::rows::FromRow for $name {
            fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Self> {
                Ok($name { $($field: r.get(stringify!($field))?),* })
            }
        }
    };
}
pub(in crate::store) use by_name;

macro_rules! scalars {
    ($($t:ty),*) => {
        $(impl FromRow for $t {
            fn from_row(r: &Row) -> rusqlite::Result<Self> {
                r.get(0)
            }
        })*
    };
}
scalars!(
    i64,
    bool,
    String,
    Vec<u8>,
    Source,
    Option<String>,
    Option<i64>
);

macro_rules! tuples {
    ($(($($t:ident $i:tt),+)),*) => {
        $(impl<$($t: FromSql),+> FromRow for ($($t,)+) {
            fn from_row(r: &Row) -> rusqlite::Result<Self> {
                Ok(($(r.get::<_, $t>($i)?,)+))
            }
        })*
    };
}
tuples!((A 0, B 1), (A 0, B 1, C 2), (A 0, B 1, C 2, D 3));

pub(super) fn all<T: FromRow>(
    c: &Connection,
    sql: &str,
    params: impl Params,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = c.prepare_cached(sql)?;
    let rows = statement.query_map(params, T::from_row)?;
    rows.collect()
}

pub(super) fn one<T: FromRow>(
    c: &Connection,
    sql: &str,
    params: impl Params,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(params, T::from_row)
}

pub(super) fn optional<T: FromRow>(
    c: &Connection,
    sql: &str,
    params: impl Params,
) -> rusqlite::Result<Option<T>> {
    c.prepare_cached(sql)?
        .query_row(params, T::from_row)
        .optional()
}
