//! One connection type over both engines, so the catalog's SQL is written once.
//!
//! The SQL modules take a [`Connection`] and speak a common dialect: numbered parameters (`?1`)
//! or positional ones (`?`), `RETURNING` instead of the last row id, `ON CONFLICT ... DO
//! NOTHING`, `string_agg`, `IS [NOT] DISTINCT FROM`, explicit `NULLS FIRST` where an order
//! has NULLs, and `CAST(sum(..) AS BIGINT)` where a sum is read as an integer. SQLite runs it as
//! written; for PostgreSQL the parameters become `$1`, and the few places where the engines
//! differ (pattern matching) ask [`Connection::dialect`]. Values cross as [`ValueRef`] (in)
//! and [`Value`] (out), SQLite's five storage classes: integers are BIGINT in PostgreSQL,
//! booleans integers 0 and 1, text `TEXT COLLATE "C"` so both engines order and match bytes.

use crate::IndexError;
use std::cell::RefCell;

/// The engine a statement goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value read from a row, or a parameter built at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Integer(n)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

/// A parameter as it is bound.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl ValueRef<'_> {
    fn to_owned(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Integer(n),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// What can be bound as a statement parameter.
pub trait Param {
    fn value_ref(&self) -> ValueRef<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value_ref(&self) -> ValueRef<'_> {
                // the index's integers are row ids, counts, sizes and times, far below 2^63
                ValueRef::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8, u64, usize);

impl Param for bool {
    fn value_ref(&self) -> ValueRef<'_> {
        ValueRef::Integer(*self as i64)
    }
}

impl Param for f64 {
    fn value_ref(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl Param for str {
    fn value_ref(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl Param for String {
    fn value_ref(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl Param for [u8] {
    fn value_ref(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl Param for Vec<u8> {
    fn value_ref(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl Param for Value {
    fn value_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(*n),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value_ref(&self) -> ValueRef<'_> {
        (**self).value_ref()
    }
}

impl<T: Param> Param for Option<T> {
    fn value_ref(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.value_ref(),
            None => ValueRef::Null,
        }
    }
}

/// The parameters of one statement: `params![a, b]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::Param),+] as &[&dyn $crate::db::Param] };
}

/// What a column's value can be read as.
pub trait FromColumn: Sized {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String>;
}

fn kind(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

impl FromColumn for i64 {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Integer(n) => Ok(n),
            other => Err(format!("{} where an integer was expected", kind(other))),
        }
    }
}

macro_rules! narrow_from_column {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
                let n = i64::from_column(v)?;
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range"))
            }
        }
    )*};
}
narrow_from_column!(i32, u32, u16, u64, usize);

impl FromColumn for bool {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        Ok(i64::from_column(v)? != 0)
    }
}

impl FromColumn for f64 {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(n) => Ok(n as f64),
            other => Err(format!("{} where a number was expected", kind(other))),
        }
    }
}

impl FromColumn for String {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Text(s) => Ok(s.to_string()),
            other => Err(format!("{} where text was expected", kind(other))),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("{} where bytes were expected", kind(other))),
        }
    }
}

impl FromColumn for Value {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        Ok(v.to_owned())
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_column(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_column(v).map(Some),
        }
    }
}

/// One row of an answer.
pub struct Row<'r>(RowInner<'r>);

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as `T`.
    pub fn get<T: FromColumn>(&self, i: usize) -> Result<T, IndexError> {
        let fail = |why: String| IndexError::Column(i, why);
        match &self.0 {
            RowInner::Sqlite(r) => {
                let v = r.get_ref(i)?;
                T::from_column(sqlite_value(v).map_err(fail)?).map_err(fail)
            }
            RowInner::Postgres(r) => {
                crate::pg::with_value(r, i, |v| T::from_column(v).map_err(fail))?
            }
        }
    }
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Result<ValueRef<'_>, String> {
    use rusqlite::types::ValueRef as V;
    Ok(match v {
        V::Null => ValueRef::Null,
        V::Integer(n) => ValueRef::Integer(n),
        V::Real(f) => ValueRef::Real(f),
        V::Text(t) => ValueRef::Text(std::str::from_utf8(t).map_err(|e| e.to_string())?),
        V::Blob(b) => ValueRef::Blob(b),
    })
}

/// A parameter bound to SQLite.
struct SqliteParam<'a>(&'a dyn Param);

impl rusqlite::ToSql for SqliteParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as V};
        Ok(ToSqlOutput::Borrowed(match self.0.value_ref() {
            ValueRef::Null => V::Null,
            ValueRef::Integer(n) => V::Integer(n),
            ValueRef::Real(f) => V::Real(f),
            ValueRef::Text(s) => V::Text(s.as_bytes()),
            ValueRef::Blob(b) => V::Blob(b),
        }))
    }
}

fn sqlite_params<'a>(
    params: &'a [&'a dyn Param],
) -> rusqlite::ParamsFromIter<impl Iterator<Item = SqliteParam<'a>>> {
    rusqlite::params_from_iter(params.iter().map(|p| SqliteParam(*p)))
}

/// A statement's parameters: `params![a, b]`, an array of one type (`[id]`), or values built
/// at run time (`Vec<Value>`).
pub trait Params {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R;
}

impl Params for &[&dyn Param] {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        f(self)
    }
}

impl<T: Param, const N: usize> Params for [T; N] {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        let refs: [&dyn Param; N] = std::array::from_fn(|i| &self[i] as &dyn Param);
        f(&refs)
    }
}

impl<T: Param> Params for &Vec<T> {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        let refs: Vec<&dyn Param> = self.iter().map(|p| p as &dyn Param).collect();
        f(&refs)
    }
}

impl<T: Param> Params for Vec<T> {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        (&self).with(f)
    }
}

/// [`Result::optional`]: a query's missing row as `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, IndexError>;
}

impl<T> OptionalExtension<T> for Result<T, IndexError> {
    fn optional(self) -> Result<Option<T>, IndexError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(IndexError::NoRow(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A connection to the index, in or outside a transaction; statements are prepared once per
/// connection and kept.
pub struct Connection<'a>(Inner<'a>, Option<&'a crate::audit::AuditQueue>);

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a RefCell<crate::pg::PgClient>),
}

impl<'a> Connection<'a> {
    pub(crate) fn sqlite(c: &'a rusqlite::Connection) -> Connection<'a> {
        Connection(Inner::Sqlite(c), None)
    }

    pub(crate) fn postgres(c: &'a RefCell<crate::pg::PgClient>) -> Connection<'a> {
        Connection(Inner::Postgres(c), None)
    }

    /// The writer's connection to PostgreSQL: audit events appended through it wait in `queue`
    /// and are chained at the end of the transaction ([`crate::audit::append_audit`] says why).
    pub(crate) fn postgres_writer(
        c: &'a RefCell<crate::pg::PgClient>,
        queue: &'a crate::audit::AuditQueue,
    ) -> Connection<'a> {
        Connection(Inner::Postgres(c), Some(queue))
    }

    /// Where audit events appended on this connection wait for the end of its transaction, if
    /// they do.
    pub(crate) fn audit_queue(&self) -> Option<&'a crate::audit::AuditQueue> {
        self.1
    }

    /// Holds the transaction-scoped lock `key` until this transaction ends, waiting for any
    /// other index writer (another archive process on the same PostgreSQL database) that
    /// holds it. Nothing on SQLite, where one process writes (the serve lock) and its writer
    /// commits one transaction at a time.
    pub(crate) fn lock(&self, key: i64) -> Result<(), IndexError> {
        if self.dialect() == Dialect::Postgres {
            self.prepare_cached("SELECT pg_advisory_xact_lock(?1)")?
                .query_row([key], |_| Ok(()))?;
        }
        Ok(())
    }

    /// [`Connection::lock`] on each of `names` in `space` (hashed to lock keys), in one order
    /// whoever asks, so that two writers locking overlapping sets never wait on each other in
    /// a circle.
    pub(crate) fn lock_names<'n>(
        &self,
        space: &str,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<(), IndexError> {
        if self.dialect() != Dialect::Postgres {
            return Ok(());
        }
        let keys: std::collections::BTreeSet<i64> =
            names.into_iter().map(|n| lock_key(space, n)).collect();
        for key in keys {
            self.lock(key)?;
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        match self.0 {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A statement, prepared on first use and kept by the connection.
    pub fn prepare_cached<'s>(&'s self, sql: &'s str) -> Result<Statement<'s, 'a>, IndexError> {
        Ok(Statement { conn: self, sql })
    }

    /// [`Connection::prepare_cached`]: every statement is kept, the rare ones fall out of the
    /// cache first.
    pub fn prepare<'s>(&'s self, sql: &'s str) -> Result<Statement<'s, 'a>, IndexError> {
        self.prepare_cached(sql)
    }

    /// Runs a statement that returns no rows; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, IndexError> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs statements without parameters, separated by semicolons.
    pub fn execute_batch(&self, sql: &str) -> Result<(), IndexError> {
        match &self.0 {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.borrow_mut().batch(sql),
        }
    }

    /// The first row read by `f`; [`IndexError::NoRow`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// The id of the row the last INSERT on this connection made.
    pub fn last_insert_rowid(&self) -> Result<i64, IndexError> {
        match &self.0 {
            Inner::Sqlite(c) => Ok(c.last_insert_rowid()),
            Inner::Postgres(_) => self.query_row("SELECT lastval()", params![], |r| r.get(0)),
        }
    }

    fn each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row) -> Result<bool, IndexError>,
    ) -> Result<(), IndexError> {
        match &self.0 {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(sqlite_params(params))?;
                while let Some(r) = rows.next()? {
                    if !f(&Row(RowInner::Sqlite(r)))? {
                        break;
                    }
                }
                Ok(())
            }
            Inner::Postgres(c) => {
                let rows = c.borrow_mut().query(sql, params)?;
                for r in &rows {
                    if !f(&Row(RowInner::Postgres(r)))? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A statement of a [`Connection`].
pub struct Statement<'s, 'a> {
    conn: &'s Connection<'a>,
    sql: &'s str,
}

impl Statement<'_, '_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize, IndexError> {
        params.with(|p| match &self.conn.0 {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(self.sql)?;
                Ok(stmt.execute(sqlite_params(p))?)
            }
            Inner::Postgres(c) => c.borrow_mut().execute(self.sql, p),
        })
    }

    /// Calls `f` on each row, in order, until it answers false.
    pub fn query_each(
        &mut self,
        params: impl Params,
        f: impl FnMut(&Row) -> Result<bool, IndexError>,
    ) -> Result<(), IndexError> {
        params.with(|p| self.conn.each(self.sql, p, f))
    }

    /// Every row, each read by `f` (read whole before the first is returned).
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row) -> Result<T, IndexError>,
    ) -> Result<std::vec::IntoIter<Result<T, IndexError>>, IndexError> {
        let mut out = Vec::new();
        self.query_each(params, |r| {
            out.push(f(r));
            Ok(true)
        })?;
        Ok(out.into_iter())
    }

    /// The first row read by `f`; [`IndexError::NoRow`] when there is none.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let mut f = Some(f);
        let mut out = None;
        self.query_each(params, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(false)
        })?;
        out.ok_or_else(|| IndexError::NoRow(first_line(self.sql)))
    }
}

/// The lock key of `name` in `space`: the first eight bytes of a SHA-256 of both.
pub(crate) fn lock_key(space: &str, name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(space.as_bytes())
        .chain_update(b"\0")
        .chain_update(name.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}

fn first_line(sql: &str) -> String {
    sql.trim().lines().next().unwrap_or_default().to_string()
}

/// `sql` with SQLite's parameters (`?1`, `?`) written as PostgreSQL's (`$1`); quoted text and
/// identifiers are left as they are.
pub(crate) fn numbered_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                out.push(ch);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_parameters("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?'"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?'"
        );
        assert_eq!(
            numbered_parameters("x = ? OR y GLOB ? OR \"?\" = ?"),
            "x = $1 OR y GLOB $2 OR \"?\" = $3"
        );
    }

    #[test]
    fn an_in_memory_sqlite_answers_through_the_common_connection() {
        let raw = rusqlite::Connection::open_in_memory().unwrap();
        let c = Connection::sqlite(&raw);
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, b BLOB)")
            .unwrap();
        let id: i64 = c
            .query_row(
                "INSERT INTO t (s, b) VALUES (?1, ?2) RETURNING id",
                params!["x", vec![1u8, 2]],
                |r| r.get(0),
            )
            .unwrap();
        let none: Option<String> = None;
        c.execute("INSERT INTO t (s) VALUES (?1)", params![none])
            .unwrap();
        assert_eq!(c.last_insert_rowid().unwrap(), id + 1);
        let rows: Vec<(i64, Option<String>)> = c
            .prepare("SELECT id, s FROM t ORDER BY id")
            .unwrap()
            .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(id, Some("x".into())), (id + 1, None)]);
        let missing = c
            .query_row("SELECT id FROM t WHERE id = ?1", [99], |r| r.get::<i64>(0))
            .optional()
            .unwrap();
        assert!(missing.is_none());
        assert!(matches!(
            c.query_row("SELECT id FROM t WHERE id = 99", params![], |r| r
                .get::<i64>(0)),
            Err(IndexError::NoRow(_))
        ));
        let err = c.query_row("SELECT s FROM t WHERE id = ?1", [id], |r| r.get::<i64>(0));
        assert!(matches!(err, Err(IndexError::Column(0, _))), "{err:?}");
    }
}
