//! The PostgreSQL side of [`crate::db`]: one client connection with its prepared statements,
//! parameters bound by the type the server inferred, and columns read back as SQLite's storage
//! classes.

use crate::db::{numbered_parameters, Param, ValueRef};
use crate::IndexError;
use postgres::types::{IsNull, ToSql, Type};
use std::collections::HashMap;
use std::error::Error;

/// Statements a connection keeps prepared; searches make new SQL with the attributes they
/// match, so the cache is emptied when it grows past this.
const STATEMENT_CACHE: usize = 256;

/// A client connection and the statements prepared on it, by their text as the catalog wrote it.
pub struct PgClient {
    /// Always there but while being dropped (see the Drop below).
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

impl Drop for PgClient {
    /// Closing a client blocks on its runtime, which cannot happen inside an async task (the
    /// index is dropped there): such a client is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("index-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

impl PgClient {
    /// Connects to `url` and works in `schema` (made when missing): the archive's tables live
    /// in a schema of their own, so a reindex can build a new one beside them and swap.
    pub fn connect(url: &str, schema: &str) -> Result<PgClient, IndexError> {
        let mut client = crate::pg_tls::connect(url).map_err(|e| match e {
            e @ IndexError::Open { .. } => e,
            e => IndexError::Open {
                path: redacted(url),
                reason: e.to_string(),
            },
        })?;
        client.batch_execute(&format!(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS {schema};
             SET search_path TO {schema};
             RESET client_min_messages;"
        ))?;
        Ok(PgClient {
            client: Some(client),
            statements: HashMap::new(),
        })
    }

    fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("a client is there until dropped")
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, IndexError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        let prepared = self.client().prepare(&numbered_parameters(sql))?;
        self.statements.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    pub fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> Result<usize, IndexError> {
        let st = self.statement(sql)?;
        let bound: Vec<PgParam> = params.iter().map(|p| PgParam(p.value_ref())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as _).collect();
        Ok(self.client().execute(&st, &refs)? as usize)
    }

    pub fn query(
        &mut self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<postgres::Row>, IndexError> {
        let st = self.statement(sql)?;
        let bound: Vec<PgParam> = params.iter().map(|p| PgParam(p.value_ref())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as _).collect();
        Ok(self.client().query(&st, &refs)?)
    }

    pub fn batch(&mut self, sql: &str) -> Result<(), IndexError> {
        Ok(self.client().batch_execute(sql)?)
    }

    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.is_closed())
    }
}

/// Runs `f`, which uses the synchronous client, where it may block: the client drives a runtime
/// of its own, which cannot start inside an async task. Off the worker on a multi-threaded
/// runtime, on a thread of its own on a current-thread one, as it is outside any runtime.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| s.spawn(f).join().expect("index client panicked")),
        Err(_) => f(),
    }
}

/// Runs `sql` (statements without parameters) on a connection of its own to `url`.
pub fn admin(url: &str, sql: &str) -> Result<(), IndexError> {
    off_runtime(|| {
        let mut client = crate::pg_tls::connect(url)?;
        client.batch_execute(sql)?;
        Ok(())
    })
}

/// Whether `schema` at `url` holds no instance (missing, or without rows).
pub fn schema_is_empty(url: &str, schema: &str) -> Result<bool, IndexError> {
    off_runtime(|| {
        let mut client = crate::pg_tls::connect(url)?;
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                                WHERE table_schema = $1 AND table_name = 'instances')",
                &[&schema],
            )?
            .get(0);
        if !exists {
            return Ok(true);
        }
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {schema}.instances"), &[])?
            .get(0);
        Ok(n == 0)
    })
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A parameter, written as the type the server inferred for its place.
#[derive(Debug)]
struct PgParam<'a>(ValueRef<'a>);

impl ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres_types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                Type::FLOAT8 => (n as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(format!("a real given for a {ty} parameter").into()),
            },
            ValueRef::Text(s) if s.contains('\0') => {
                Err("text holding a NUL character (PostgreSQL's text cannot)".into())
            }
            ValueRef::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.to_sql(ty, out)
                }
                _ => Err(format!("text given for a {ty} parameter").into()),
            },
            ValueRef::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(format!("bytes given for a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// Calls `f` with column `i` of `row` as one of SQLite's storage classes.
pub fn with_value<T>(
    row: &postgres::Row,
    i: usize,
    f: impl FnOnce(ValueRef<'_>) -> T,
) -> Result<T, IndexError> {
    let column = row
        .columns()
        .get(i)
        .ok_or_else(|| IndexError::Column(i, "no such column".into()))?;
    let v = match *column.type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(ValueRef::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|n| ValueRef::Integer(n.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|n| ValueRef::Integer(n.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|b| ValueRef::Integer(b.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(ValueRef::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|f| ValueRef::Real(f.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<&str>>(i)?.map(ValueRef::Text)
        }
        Type::BYTEA => row.try_get::<_, Option<&[u8]>>(i)?.map(ValueRef::Blob),
        ref other => {
            return Err(IndexError::Column(
                i,
                format!("a {other} column (the catalog reads BIGINT, TEXT, BYTEA and reals)"),
            ))
        }
    };
    Ok(f(v.unwrap_or(ValueRef::Null)))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_url_is_named_without_its_password() {
        assert_eq!(
            redacted("postgres://strata:s3cret@db.example:5432/strata"),
            "postgres://strata@db.example:5432/strata"
        );
        assert_eq!(redacted("postgres://db/strata"), "postgres://db/strata");
        assert_eq!(redacted("host=/tmp user=x"), "host=/tmp user=x");
    }
}
