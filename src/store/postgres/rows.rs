//! Reading PostgreSQL rows into hub's types, without panicking on a column of another type (as
//! `Row::get` would): a struct by its columns' names, a tuple or a single value by position.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::Row;

use crate::domain::Source;
use crate::store::StoreError;

pub(in crate::store) trait FromRow: Sized {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error>;
}

/// Implements [`FromRow`] for a struct whose fields are named as the query's columns.
macro_rules! by_name {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::store::postgres::rows::FromRow for $name {
            fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
                Ok($name { $($field: r.try_get(stringify!($field))?),* })
            }
        }
    };
}
pub(in crate::store) use by_name;

macro_rules! scalars {
    ($($t:ty),*) => {
        $(impl FromRow for $t {
            fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
                r.try_get(0)
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
        $(impl<$($t: FromSqlOwned),+> FromRow for ($($t,)+) {
            fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
                Ok(($(r.try_get::<_, $t>($i)?,)+))
            }
        })*
    };
}
tuples!((A 0, B 1), (A 0, B 1, C 2), (A 0, B 1, C 2, D 3));

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) async fn all<T: FromRow>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<T>, StoreError> {
    let rows = query(c, sql, params).await?;
    Ok(rows.iter().map(T::from_row).collect::<Result<_, _>>()?)
}

/// Every statement is prepared once per connection and kept: parsing and planning it again for
/// each call cost the server as much as running it, and the client a round trip.
pub(super) async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query(&statement, params).await
}

pub(super) async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query_opt(&statement, params).await
}

pub(super) async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.execute(&statement, params).await
}

/// As [`all`], on a connection outside the pool.
pub(super) async fn all_direct<T: FromRow>(
    c: &tokio_postgres::Client,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<T>, StoreError> {
    let rows = c.query(sql, params).await?;
    Ok(rows.iter().map(T::from_row).collect::<Result<_, _>>()?)
}

pub(super) async fn one<T: FromRow>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<T, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(T::from_row(&c.query_one(&statement, params).await?)?)
}

pub(super) async fn optional<T: FromRow>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<T>, StoreError> {
    Ok(query_opt(c, sql, params)
        .await?
        .as_ref()
        .map(T::from_row)
        .transpose()?)
}
