//! How a `Source` is kept in a PostgreSQL column: its name, as on SQLite.

use bytes::BytesMut;
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::domain::Source;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Source {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.as_str().to_sql(ty, out)
    }

    accepts!(TEXT, VARCHAR);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Source {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Source, BoxError> {
        Ok(<&str as FromSql>::from_sql(ty, raw)?.parse()?)
    }

    accepts!(TEXT, VARCHAR);
}
