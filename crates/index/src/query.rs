//! Attribute matching over the index, for C-FIND (PS3.4 C.2.2.2, C.6) and, later, QIDO-RS.
//!
//! Each attribute the index keeps as a column has an entry in [`CATALOG`]: its level, its SQL
//! expression and how it matches (single value, `*`/`?` wildcards, date and time ranges, UID
//! lists; person names case- and accent-insensitively). Computed attributes (Number of … Related
//! …, Modalities in Study) are derived in SQL. Any other requested attribute is returned from the
//! precomputed DICOM JSON of a representative instance, and matched universally, which PS3.4
//! allows for optional keys. Answers come from the index only; no blob is ever opened.

use super::IndexError;
use crate::db::{Connection, Dialect, Value};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use strata_mpi::name_key;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }

    fn tables(self) -> &'static str {
        match self {
            Level::Patient => "patients p",
            Level::Study => "studies st JOIN patients p ON p.id = st.patient_fk",
            Level::Series => "series se JOIN studies st ON st.id = se.study_fk JOIN patients p ON p.id = st.patient_fk",
            Level::Image => "instances i JOIN series se ON se.id = i.series_fk JOIN studies st ON st.id = se.study_fk JOIN patients p ON p.id = st.patient_fk",
        }
    }

    /// The join from this level's rows up to those of `top` (this level or one above it): the
    /// tables a search's conditions name, where [`Level::tables`] joins all those above.
    fn tables_up_to(self, top: Level) -> String {
        const CHAIN: [(Level, &str, &str); 4] = [
            (Level::Image, "instances i", ""),
            (
                Level::Series,
                "series se",
                " JOIN series se ON se.id = i.series_fk",
            ),
            (
                Level::Study,
                "studies st",
                " JOIN studies st ON st.id = se.study_fk",
            ),
            (
                Level::Patient,
                "patients p",
                " JOIN patients p ON p.id = st.patient_fk",
            ),
        ];
        let mut sql = String::new();
        for (level, table, join) in CHAIN {
            if level == self {
                sql.push_str(table);
            } else if level < self && level >= top {
                sql.push_str(join);
            }
        }
        sql
    }

    /// The id of the level's row, the last key of its order.
    fn id(self) -> &'static str {
        match self {
            Level::Patient => "p.id",
            Level::Study => "st.id",
            Level::Series => "se.id",
            Level::Image => "i.id",
        }
    }

    fn order(self) -> &'static str {
        match self {
            Level::Patient => "p.patient_name NULLS FIRST, p.id",
            Level::Study => "st.study_date NULLS FIRST, st.study_time NULLS FIRST, st.id",
            Level::Series => "se.series_number NULLS FIRST, se.id",
            Level::Image => "i.instance_number NULLS FIRST, i.id",
        }
    }

    /// SQL giving the DICOM JSON of one instance representative of the row.
    fn representative(self) -> &'static str {
        match self {
            Level::Image => "i.metadata",
            Level::Series => "(SELECT x.metadata FROM instances x WHERE x.series_fk = se.id ORDER BY x.instance_number NULLS FIRST, x.id LIMIT 1)",
            Level::Study => "(SELECT x.metadata FROM instances x JOIN series y ON y.id = x.series_fk WHERE y.study_fk = st.id ORDER BY x.id LIMIT 1)",
            Level::Patient => "(SELECT x.metadata FROM instances x JOIN series y ON y.id = x.series_fk JOIN studies z ON z.id = y.study_fk WHERE z.patient_fk = p.id ORDER BY z.study_date DESC NULLS LAST, z.id LIMIT 1)",
        }
    }
}

/// How an attribute matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Case-sensitive single value or wildcard.
    Text,
    /// Person name: case- and accent-insensitive, wildcards; `expr` holds the folded key.
    Name,
    Date,
    Time,
    /// A list of UIDs separated by backslashes.
    Uid,
    Int,
    /// Returned, never matched.
    Computed,
    /// Matches if any series of the study has one of the listed modalities.
    Modalities,
    /// Compared after the same normalisation ingest applied (upper case, folded spaces).
    Issuer,
}

struct Attribute {
    tag: Tag,
    vr: VR,
    level: Level,
    /// The value returned.
    expr: &'static str,
    /// The expression matched, when it differs from `expr`.
    match_expr: Option<&'static str>,
    kind: Kind,
}

const fn attr(tag: Tag, vr: VR, level: Level, expr: &'static str, kind: Kind) -> Attribute {
    Attribute {
        tag,
        vr,
        level,
        expr,
        match_expr: None,
        kind,
    }
}

static CATALOG: &[Attribute] = &[
    Attribute { tag: tags::PATIENT_NAME, vr: VR::PN, level: Level::Patient, expr: "p.patient_name", match_expr: Some("p.patient_name_key"), kind: Kind::Name },
    attr(tags::PATIENT_ID, VR::LO, Level::Patient, "p.patient_id", Kind::Text),
    attr(tags::ISSUER_OF_PATIENT_ID, VR::LO, Level::Patient, "p.issuer", Kind::Issuer),
    attr(tags::PATIENT_BIRTH_DATE, VR::DA, Level::Patient, "p.birth_date", Kind::Date),
    attr(tags::PATIENT_SEX, VR::CS, Level::Patient, "p.sex", Kind::Text),
    attr(tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, Level::Patient, "(SELECT count(*) FROM studies z WHERE z.patient_fk = p.id)", Kind::Computed),
    attr(tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS, Level::Patient, "(SELECT coalesce(sum(z.num_series), 0) FROM studies z WHERE z.patient_fk = p.id)", Kind::Computed),
    attr(tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS, Level::Patient, "(SELECT coalesce(sum(z.num_instances), 0) FROM studies z WHERE z.patient_fk = p.id)", Kind::Computed),
    attr(tags::STUDY_INSTANCE_UID, VR::UI, Level::Study, "st.study_uid", Kind::Uid),
    attr(tags::STUDY_DATE, VR::DA, Level::Study, "st.study_date", Kind::Date),
    attr(tags::STUDY_TIME, VR::TM, Level::Study, "st.study_time", Kind::Time),
    attr(tags::ACCESSION_NUMBER, VR::SH, Level::Study, "st.accession_number", Kind::Text),
    attr(tags::STUDY_ID, VR::SH, Level::Study, "st.study_id", Kind::Text),
    attr(tags::STUDY_DESCRIPTION, VR::LO, Level::Study, "st.study_description", Kind::Text),
    Attribute { tag: tags::REFERRING_PHYSICIAN_NAME, vr: VR::PN, level: Level::Study, expr: "st.referring_physician", match_expr: Some("upper(st.referring_physician)"), kind: Kind::Name },
    attr(tags::MODALITIES_IN_STUDY, VR::CS, Level::Study, "(SELECT string_agg(m, '\\' ORDER BY m) FROM (SELECT DISTINCT z.modality AS m FROM series z WHERE z.study_fk = st.id AND z.modality IS NOT NULL) AS ms)", Kind::Modalities),
    attr(tags::SOP_CLASSES_IN_STUDY, VR::UI, Level::Study, "(SELECT string_agg(c, '\\' ORDER BY c) FROM (SELECT DISTINCT x.sop_class_uid AS c FROM instances x JOIN series z ON z.id = x.series_fk WHERE z.study_fk = st.id) AS cs)", Kind::Computed),
    attr(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, Level::Study, "st.num_series", Kind::Computed),
    attr(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, Level::Study, "st.num_instances", Kind::Computed),
    attr(tags::SERIES_INSTANCE_UID, VR::UI, Level::Series, "se.series_uid", Kind::Uid),
    attr(tags::MODALITY, VR::CS, Level::Series, "se.modality", Kind::Text),
    attr(tags::SERIES_NUMBER, VR::IS, Level::Series, "se.series_number", Kind::Int),
    attr(tags::SERIES_DESCRIPTION, VR::LO, Level::Series, "se.series_description", Kind::Text),
    attr(tags::BODY_PART_EXAMINED, VR::CS, Level::Series, "se.body_part", Kind::Text),
    attr(tags::SERIES_DATE, VR::DA, Level::Series, "se.series_date", Kind::Date),
    attr(tags::SERIES_TIME, VR::TM, Level::Series, "se.series_time", Kind::Time),
    attr(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, Level::Series, "se.num_instances", Kind::Computed),
    attr(tags::SOP_INSTANCE_UID, VR::UI, Level::Image, "i.sop_uid", Kind::Uid),
    attr(tags::SOP_CLASS_UID, VR::UI, Level::Image, "i.sop_class_uid", Kind::Uid),
    attr(tags::INSTANCE_NUMBER, VR::IS, Level::Image, "i.instance_number", Kind::Int),
    attr(tags::ROWS, VR::US, Level::Image, "i.rows", Kind::Int),
    attr(tags::COLUMNS, VR::US, Level::Image, "i.columns", Kind::Int),
    attr(tags::NUMBER_OF_FRAMES, VR::IS, Level::Image, "i.frames", Kind::Int),
    attr(tags::CONTENT_DATE, VR::DA, Level::Image, "i.content_date", Kind::Date),
    attr(tags::CONTENT_TIME, VR::TM, Level::Image, "i.content_time", Kind::Time),
    attr(tags::AVAILABLE_TRANSFER_SYNTAX_UID, VR::UI, Level::Image, "i.transfer_syntax", Kind::Computed),
];

fn catalog(tag: Tag) -> Option<&'static Attribute> {
    CATALOG.iter().find(|a| a.tag == tag)
}

/// The patient's name as a search of studies (or of their series and instances) matches it:
/// on the folded name each study carries, so the page is chosen from the studies' own indexes
/// without a join to the patients. Fuzzy matching also reads the patient's phonetic key, and
/// keeps [`CATALOG`]'s patient-level form.
static NAME_OF_STUDIES: Attribute = Attribute {
    tag: tags::PATIENT_NAME,
    vr: VR::PN,
    level: Level::Study,
    expr: "p.patient_name",
    match_expr: Some("st.patient_name_key"),
    kind: Kind::Name,
};

/// The attribute a query at `level` matches `tag` on.
fn searched(tag: Tag, level: Level, fuzzy: bool) -> Option<&'static Attribute> {
    if tag == tags::PATIENT_NAME && level >= Level::Study && !fuzzy {
        return Some(&NAME_OF_STUDIES);
    }
    catalog(tag)
}

/// One key of a query: an attribute, and the value to match (empty: return only).
#[derive(Debug, Clone)]
pub struct Key {
    pub tag: Tag,
    pub value: String,
    /// For a sequence key: its item, whose non-empty attributes must all match within one
    /// stored item (sequence matching, PS3.4 C.2.2.2.6) and whose attributes are returned.
    pub item: Option<InMemDicomObject>,
}

impl Key {
    /// A key with a value to match (empty: return only).
    pub fn new(tag: Tag, value: impl Into<String>) -> Key {
        Key {
            tag,
            value: value.into(),
            item: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    pub keys: Vec<Key>,
    /// Filled in Retrieve AE Title (0008,0054) when requested.
    pub retrieve_ae_title: String,
    pub limit: Option<usize>,
    pub offset: usize,
    /// Fuzzy matching of patient names (QIDO-RS `fuzzymatching=true`): each name component
    /// also matches as a prefix, and names that sound alike (Double Metaphone) match.
    pub fuzzy: bool,
    /// Whose patients may match: a patient user's query never sees another person's rows,
    /// whatever its keys ask for.
    pub scope: super::Scope,
}

impl Query {
    /// A query over every patient's data: exact names, no paging, no Retrieve AE Title.
    pub fn all(level: Level, keys: Vec<Key>) -> Query {
        Query {
            level,
            keys,
            retrieve_ae_title: String::new(),
            limit: None,
            offset: 0,
            fuzzy: false,
            scope: super::Scope::All,
        }
    }

    /// The query names one entity of its level by its UID (a single value, no wildcard), so it
    /// reads at most one row and its few related counts.
    pub fn is_point(&self) -> bool {
        let unique = match self.level {
            Level::Patient => return false,
            Level::Study => tags::STUDY_INSTANCE_UID,
            Level::Series => tags::SERIES_INSTANCE_UID,
            Level::Image => tags::SOP_INSTANCE_UID,
        };
        self.keys.iter().any(|k| {
            k.tag == unique
                && k.item.is_none()
                && !k.value.is_empty()
                && !k.value.contains(['*', '?', '\\'])
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The operator that matches a column against a pattern made by [`pattern`]: SQLite's GLOB,
/// PostgreSQL's LIKE (both case-sensitive and byte-wise over the catalog's text).
fn like(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "GLOB",
        Dialect::Postgres => "LIKE",
    }
}

/// Turns DICOM wildcards (`*`, `?`) into the engine's pattern, escaping its own metacharacters.
fn pattern(d: Dialect, value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match (d, c) {
            (Dialect::Sqlite, '[') => out.push_str("[[]"),
            (Dialect::Sqlite, ']') => out.push_str("[]]"),
            (Dialect::Postgres, '*') => out.push('%'),
            (Dialect::Postgres, '?') => out.push('_'),
            (Dialect::Postgres, '%' | '_' | '\\') => {
                out.push('\\');
                out.push(c);
            }
            (_, c) => out.push(c),
        }
    }
    out
}

/// A text above every text that starts with `prefix`, the least one for the dates and times
/// this is given (digits and `.` only, checked before): its last character raised by one. So
/// `x < above_prefix(p)` holds for all of `x <= p` and `x` starting with `p`, and an index
/// range can stop there.
fn above_prefix(prefix: &str) -> String {
    let mut out = prefix.to_string();
    // a character that cannot be raised within one byte is dropped: a looser bound, still true
    while let Some(last) = out.pop() {
        if last.is_ascii() && last != '\x7f' {
            out.push((last as u8 + 1) as char);
            return out;
        }
    }
    char::MAX.to_string()
}

fn has_wildcard(v: &str) -> bool {
    v.contains('*') || v.contains('?')
}

/// Adds the SQL condition for one key to `conds`/`params`.
fn condition(
    d: Dialect,
    a: &Attribute,
    value: &str,
    fuzzy: bool,
    conds: &mut Vec<String>,
    params: &mut Vec<Value>,
) -> Result<(), QueryError> {
    let e = a.match_expr.unwrap_or(a.expr);
    let value = value.trim_matches(|c: char| c == ' ' || c == '\0');
    if value.is_empty() || value == "*" {
        return Ok(()); // universal matching
    }
    match a.kind {
        Kind::Computed => {}
        Kind::Uid => {
            let uids: Vec<&str> = value
                .split('\\')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect();
            conds.push(format!("{e} IN ({})", vec!["?"; uids.len()].join(",")));
            params.extend(uids.iter().map(|u| Value::Text(u.to_string())));
        }
        Kind::Modalities => {
            let mods: Vec<&str> = value
                .split('\\')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect();
            conds.push(format!(
                "EXISTS (SELECT 1 FROM series z WHERE z.study_fk = st.id AND z.modality IN ({}))",
                vec!["?"; mods.len()].join(",")
            ));
            params.extend(mods.iter().map(|u| Value::Text(u.to_string())));
        }
        Kind::Date | Kind::Time => {
            let valid = |s: &str| {
                s.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ':')
            };
            let clean = |s: &str| s.replace(':', "");
            if let Some((from, to)) = value.split_once('-') {
                if !valid(from) || !valid(to) || (from.is_empty() && to.is_empty()) {
                    return Err(QueryError::Invalid(format!(
                        "{value:?} is not a valid date or time range"
                    )));
                }
                if !from.is_empty() {
                    conds.push(format!("{e} >= ?"));
                    params.push(Value::Text(clean(from)));
                }
                if !to.is_empty() {
                    // inclusive of everything the end value is a prefix of (1000 → 10:00:59.99);
                    // the bound below it says the same in a form an index range can use
                    conds.push(format!("{e} < ? AND ({e} <= ? OR {e} {} ?)", like(d)));
                    params.push(Value::Text(above_prefix(&clean(to))));
                    params.push(Value::Text(clean(to)));
                    params.push(Value::Text(pattern(d, &format!("{}*", clean(to)))));
                }
            } else {
                if !valid(value) {
                    return Err(QueryError::Invalid(format!(
                        "{value:?} is not a valid date or time"
                    )));
                }
                // the value itself or with a fraction; the two bounds say the same in a form
                // an index range can use
                let exact = clean(value);
                conds.push(format!(
                    "{e} >= ? AND {e} < ? AND ({e} = ? OR {e} {} ?)",
                    like(d)
                ));
                params.push(Value::Text(exact.clone()));
                params.push(Value::Text(above_prefix(&format!("{exact}."))));
                params.push(Value::Text(exact.clone()));
                params.push(Value::Text(pattern(d, &format!("{exact}.*"))));
            }
        }
        Kind::Int => {
            let n: i64 = value
                .parse()
                .map_err(|_| QueryError::Invalid(format!("{value:?} is not a number")))?;
            conds.push(format!("{e} = ?"));
            params.push(Value::Integer(n));
        }
        Kind::Name if fuzzy && a.tag == tags::PATIENT_NAME => {
            // each component as a prefix ("smi^jo" finds "SMITH^JOHN"), or alike in sound
            let prefixes: Vec<String> = name_key(value)
                .split('^')
                .map(|c| {
                    if c.is_empty() || c.ends_with('*') {
                        c.to_string()
                    } else {
                        format!("{c}*")
                    }
                })
                .collect();
            let prefix = if prefixes.len() == 1 {
                format!("{}*", prefixes[0])
            } else {
                prefixes.join("^")
            };
            let plain = |c: &str| c.replace(['*', '?'], "");
            let mut parts = value.split('=').next().unwrap_or("").split('^');
            let family = strata_mpi::phonetic(&plain(parts.next().unwrap_or("")));
            let given = strata_mpi::phonetic(&plain(parts.next().unwrap_or("")));
            if family.is_empty() {
                conds.push(format!("{e} {} ?", like(d)));
                params.push(Value::Text(pattern(d, &prefix)));
            } else {
                let sound = if given.is_empty() {
                    format!("{family}^*")
                } else {
                    format!("{family}^{given}")
                };
                conds.push(format!(
                    "({e} {op} ? OR p.name_phonetic {op} ?)",
                    op = like(d)
                ));
                params.push(Value::Text(pattern(d, &prefix)));
                params.push(Value::Text(pattern(d, &sound)));
            }
        }
        Kind::Name => {
            let folded = name_key(value);
            if has_wildcard(&folded) {
                conds.push(format!("{e} {} ?", like(d)));
                params.push(Value::Text(pattern(d, &folded)));
            } else {
                conds.push(format!("{e} = ?"));
                params.push(Value::Text(folded));
            }
        }
        Kind::Issuer => {
            let norm = value
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_uppercase();
            conds.push(format!("{e} {} ?", like(d)));
            params.push(Value::Text(pattern(d, &norm)));
        }
        Kind::Text => {
            if has_wildcard(value) {
                conds.push(format!("{e} {} ?", like(d)));
                params.push(Value::Text(pattern(d, value)));
            } else {
                conds.push(format!("{e} = ?"));
                params.push(Value::Text(value.to_string()));
            }
        }
    }
    Ok(())
}

fn element(tag: Tag, vr: VR, v: &Value) -> DataElement<InMemDicomObject> {
    let text = match v {
        Value::Null => None,
        Value::Integer(n) => Some(n.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Text(s) => Some(s.clone()),
        Value::Blob(_) => None,
    };
    let value = match (vr, text) {
        (_, None) => PrimitiveValue::Empty,
        (VR::US, Some(s)) => s
            .parse::<u16>()
            .map(PrimitiveValue::from)
            .unwrap_or(PrimitiveValue::Empty),
        // integers travel as numbers in DICOM JSON
        (VR::IS, Some(s)) => s
            .parse::<i32>()
            .map(PrimitiveValue::from)
            .unwrap_or(PrimitiveValue::from(s)),
        (_, Some(s)) if s.contains('\\') => {
            PrimitiveValue::Strs(s.split('\\').map(String::from).collect())
        }
        (_, Some(s)) => PrimitiveValue::from(s),
    };
    DataElement::new(tag, vr, value)
}

/// Runs `query`; each match is an identifier holding exactly the requested keys plus
/// Query/Retrieve Level and Specific Character Set (UTF-8).
pub fn find(c: &Connection, q: &Query) -> Result<Vec<InMemDicomObject>, QueryError> {
    let mut selects = vec!["1".to_string()];
    let mut returned: Vec<(Tag, VR, usize)> = Vec::new();
    let mut from_metadata: Vec<Tag> = Vec::new();
    let mut conds = Vec::new();
    let mut params = Vec::new();
    // the highest level a condition names: a page is chosen over the tables down from it
    let mut top = q.level;
    // the patient's name matched on the name each study carries (see `name_page`)
    let mut by_study_name = false;
    for key in &q.keys {
        if key.tag == tags::QUERY_RETRIEVE_LEVEL || key.tag == tags::SPECIFIC_CHARACTER_SET {
            continue;
        }
        match searched(key.tag, q.level, q.fuzzy) {
            Some(a) if a.level <= q.level => {
                let before = conds.len();
                condition(c.dialect(), a, &key.value, q.fuzzy, &mut conds, &mut params)?;
                if conds.len() > before {
                    top = top.min(a.level);
                    by_study_name |= std::ptr::eq(a, &NAME_OF_STUDIES);
                }
                returned.push((a.tag, a.vr, selects.len()));
                selects.push(a.expr.to_string());
            }
            // an attribute of a lower level: nothing to return at this level
            Some(_) => {}
            None => from_metadata.push(key.tag),
        }
    }
    let metadata_col = selects.len();
    if !from_metadata.is_empty() {
        selects.push(q.level.representative().to_string());
    }
    let templates: Vec<(Tag, &InMemDicomObject)> = q
        .keys
        .iter()
        .filter_map(|k| k.item.as_ref().map(|i| (k.tag, i)))
        .collect();
    // Sequence keys filter after SQL, so paging does too when there are any.
    let filters_in_rust = templates.iter().any(|(_, t)| has_filter(t));
    if let Some(person) = q.scope.person_param() {
        conds.push("p.person_fk = ? AND p.mpi_manual = 1".to_string());
        params.push(Value::Integer(person));
        top = Level::Patient;
    }
    if let Some(share) = q.scope.share_param() {
        if q.level == Level::Patient {
            conds.push(
                "p.id IN (SELECT st.patient_fk FROM studies st JOIN share_studies sh \
                 ON sh.study_uid = st.study_uid WHERE sh.share_fk = ?)"
                    .to_string(),
            );
        } else {
            conds.push(
                "st.study_uid IN (SELECT sh.study_uid FROM share_studies sh WHERE sh.share_fk = ?)"
                    .to_string(),
            );
            top = top.min(Level::Study);
        }
        params.push(Value::Integer(share));
    }
    let selects = selects.join(", ");
    let sql = match q.limit {
        Some(limit)
            if by_study_name
                && c.dialect() == Dialect::Sqlite
                && q.level == Level::Study
                && top == Level::Study
                && !filters_in_rust
                && !q.is_point() =>
        {
            let (tables, order) = (q.level.tables(), q.level.order());
            match name_page(c, &conds, &params, limit, q.offset)? {
                NamePage::Ids(ids) => {
                    params = vec![Value::Text(serde_json::to_string(&ids).expect("ids"))];
                    format!(
                        "SELECT {selects} FROM {tables} \
                         WHERE st.id IN (SELECT value FROM json_each(?)) ORDER BY {order}"
                    )
                }
                NamePage::Walk => format!(
                    "SELECT {selects} FROM {tables} WHERE st.id IN \
                     (SELECT st.id FROM studies st INDEXED BY studies_date WHERE {} \
                      ORDER BY {order} LIMIT {} OFFSET {}) ORDER BY {order}",
                    conds.join(" AND "),
                    sql_count(limit),
                    sql_count(q.offset)
                ),
            }
        }
        _ => select_sql(q, &selects, &conds, top, filters_in_rust),
    };
    let mut stmt = c.prepare_cached(&sql)?;
    let mut out = Vec::new();
    stmt.query_each(&params, |row| {
        let mut excluded = false;
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(q.level.as_str()),
        ));
        for (tag, vr, col) in &returned {
            obj.put(element(*tag, *vr, &row.get::<Value>(*col)?));
        }
        if !from_metadata.is_empty() {
            let json: Option<String> = row.get(metadata_col)?;
            let header: Option<InMemDicomObject> = json.and_then(|j| dicom_json::from_str(&j).ok());
            for tag in &from_metadata {
                let found = header.as_ref().and_then(|h| h.get(*tag).cloned());
                if let Some((_, template)) = templates.iter().find(|(t, _)| t == tag) {
                    let stored = found.as_ref().and_then(|e| e.items()).unwrap_or(&[]);
                    let items = matching_items(stored, template);
                    if has_filter(template) && items.is_empty() {
                        excluded = true;
                    }
                    obj.put(DataElement::new(*tag, VR::SQ, DataSetSequence::from(items)));
                    continue;
                }
                match (found, *tag) {
                    // A search finds; it never hands out binary values (pixel-like data such
                    // as overlays, icons or float pixel data): those are retrieved, by whoever
                    // may retrieve originals.
                    (Some(e), _) if is_binary(e.vr()) => None,
                    (Some(e), _) => obj.put(e),
                    (None, tags::RETRIEVE_AE_TITLE) => obj.put(DataElement::new(
                        *tag,
                        VR::AE,
                        PrimitiveValue::from(q.retrieve_ae_title.clone()),
                    )),
                    (None, tags::INSTANCE_AVAILABILITY) => obj.put(DataElement::new(
                        *tag,
                        VR::CS,
                        PrimitiveValue::from("ONLINE"),
                    )),
                    (None, t) => {
                        let vr = dicom_core::dictionary::DataDictionary::by_tag(
                            &dicom_dictionary_std::StandardDataDictionary,
                            t,
                        )
                        .map(|e| e.vr.relaxed())
                        .unwrap_or(VR::UN);
                        obj.put(DataElement::new(t, vr, PrimitiveValue::Empty))
                    }
                };
            }
        }
        if !excluded {
            out.push(obj);
        }
        Ok(true)
    })?;
    if filters_in_rust {
        out = out
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .collect();
    }
    Ok(out)
}

/// How a page of studies matching a patient's name (and perhaps other study attributes) is
/// chosen on SQLite, whose planner cannot tell a name matching two studies from one matching a
/// twentieth of the archive: both costs are bounded by counting the matches up to a bound.
enum NamePage {
    /// Few matches: the page's ids, read from the name index and sorted here.
    Ids(Vec<i64>),
    /// Many: walk the studies in the answer's order (an index holding the name beside it)
    /// until the page is full, which takes about page × studies / matches entries, fewer
    /// than the matches themselves past the bound.
    Walk,
}

/// Counts the studies matching `conds` up to a bound (ten pages' worth, at least a thousand),
/// keeping their order keys: under the bound the page is cut from them, in the order of
/// [`Level::order`] (NULLs first, texts byte-wise as SQLite's BINARY compares, then the id).
fn name_page(
    c: &Connection,
    conds: &[String],
    params: &[Value],
    limit: usize,
    offset: usize,
) -> Result<NamePage, QueryError> {
    let bound = offset
        .saturating_add(limit)
        .saturating_mul(10)
        .clamp(1000, 100_000);
    let sql = format!(
        "SELECT st.study_date, st.study_time, st.id FROM studies st WHERE {} LIMIT {}",
        conds.join(" AND "),
        bound + 1
    );
    type Keys = (Option<String>, Option<String>, i64);
    let mut rows = c
        .prepare_cached(&sql)?
        .query_map(params.to_vec(), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<Keys>, IndexError>>()?;
    if rows.len() > bound {
        return Ok(NamePage::Walk);
    }
    rows.sort_unstable();
    let ids = rows.into_iter().skip(offset).take(limit).map(|r| r.2);
    Ok(NamePage::Ids(ids.collect()))
}

/// The statement of a search. A page (a limit, applied in SQL) is chosen first, as the ids of
/// its rows in the answer's order, and only its rows are then joined and their columns (counts,
/// representative headers) computed: the matches beyond the page cost an index entry each, and
/// when the order has an index (studies by date) the scan stops at the page's end. The page is
/// chosen over the tables its conditions name alone (`top` down), so a search of studies by
/// date reads the date index and nothing else. A point query reads one row either way and keeps
/// the plain form.
fn select_sql(
    q: &Query,
    selects: &str,
    conds: &[String],
    top: Level,
    filters_in_rust: bool,
) -> String {
    let (tables, order) = (q.level.tables(), q.level.order());
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    match q.limit {
        Some(limit) if !filters_in_rust => {
            // SQLite's LIMIT and OFFSET are signed 64-bit: a larger count is a float literal
            // there, which it refuses; no index holds that many rows, so the largest it takes
            // means the same
            let page = format!("LIMIT {} OFFSET {}", sql_count(limit), sql_count(q.offset));
            if q.is_point() {
                return format!("SELECT {selects} FROM {tables}{filter} ORDER BY {order} {page}");
            }
            let (id, named) = (q.level.id(), q.level.tables_up_to(top));
            format!(
                "SELECT {selects} FROM {tables} WHERE {id} IN \
                 (SELECT {id} FROM {named}{filter} ORDER BY {order} {page}) ORDER BY {order}"
            )
        }
        _ => format!("SELECT {selects} FROM {tables}{filter} ORDER BY {order}"),
    }
}

/// True when a sequence key's item has a value to match (else it only asks for attributes).
fn has_filter(template: &InMemDicomObject) -> bool {
    template.iter().any(|e| {
        e.header().vr != VR::SQ
            && e.to_str()
                .is_ok_and(|s| !s.trim_matches(['\0', ' ']).is_empty())
    })
}

/// The stored items in which every non-empty key of `template` matches, each reduced to the
/// template's attributes.
fn matching_items(
    stored: &[InMemDicomObject],
    template: &InMemDicomObject,
) -> Vec<InMemDicomObject> {
    stored
        .iter()
        .filter(|item| {
            template.iter().all(|k| {
                let pattern = k
                    .to_str()
                    .map(|s| s.trim_matches(['\0', ' ']).to_string())
                    .unwrap_or_default();
                if pattern.is_empty() || k.header().vr == VR::SQ {
                    return true;
                }
                let value = item
                    .get(k.header().tag)
                    .and_then(|e| {
                        e.to_str()
                            .ok()
                            .map(|s| s.trim_matches(['\0', ' ']).to_string())
                    })
                    .unwrap_or_default();
                value_matches(k.header().vr, &pattern, &value)
            })
        })
        .map(|item| {
            let mut reduced = InMemDicomObject::new_empty();
            for k in template.iter() {
                match item.get(k.header().tag) {
                    Some(e) => reduced.put(e.clone()),
                    None => reduced.put(DataElement::new(
                        k.header().tag,
                        k.header().vr,
                        PrimitiveValue::Empty,
                    )),
                };
            }
            reduced
        })
        .collect()
}

/// Single value, wildcard or UID list matching of one value, as the SQL conditions do.
fn value_matches(vr: VR, pattern: &str, value: &str) -> bool {
    match vr {
        VR::UI => pattern.split('\\').any(|u| u.trim() == value),
        VR::PN => wildcard(&name_key(pattern), &name_key(value)),
        _ => wildcard(pattern, value),
    }
}

/// `*` matches any run of characters, `?` any one character.
fn wildcard(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Value representations holding bytes rather than text or numbers.
fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// A row count as SQLite's LIMIT and OFFSET take it: at most `i64::MAX`.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_queries_name_one_entity_by_uid() {
        let q = Query::all;
        let uid = |tag, v: &str| Key::new(tag, v);
        assert!(q(Level::Study, vec![uid(tags::STUDY_INSTANCE_UID, "1.2.3")]).is_point());
        assert!(q(
            Level::Image,
            vec![
                uid(tags::PATIENT_NAME, "A*"),
                uid(tags::SOP_INSTANCE_UID, "1.2.3.4")
            ]
        )
        .is_point());
        // a wildcard, a UID list, an empty (return-only) key, a key of another level
        assert!(!q(Level::Study, vec![uid(tags::STUDY_INSTANCE_UID, "1.2.*")]).is_point());
        assert!(!q(
            Level::Study,
            vec![uid(tags::STUDY_INSTANCE_UID, "1.2\\1.3")]
        )
        .is_point());
        assert!(!q(Level::Study, vec![uid(tags::STUDY_INSTANCE_UID, "")]).is_point());
        assert!(!q(Level::Series, vec![uid(tags::STUDY_INSTANCE_UID, "1.2.3")]).is_point());
        assert!(!q(Level::Patient, vec![uid(tags::PATIENT_ID, "P1")]).is_point());
    }

    #[test]
    fn a_page_is_chosen_over_the_tables_its_conditions_name() {
        assert_eq!(Level::Study.tables_up_to(Level::Study), "studies st");
        assert_eq!(
            Level::Study.tables_up_to(Level::Patient),
            Level::Study.tables()
        );
        assert_eq!(
            Level::Image.tables_up_to(Level::Series),
            "instances i JOIN series se ON se.id = i.series_fk"
        );
        assert_eq!(
            Level::Image.tables_up_to(Level::Patient),
            Level::Image.tables()
        );
        assert_eq!(Level::Patient.tables_up_to(Level::Patient), "patients p");
    }

    #[test]
    fn the_bound_above_a_prefix_is_above_all_it_prefixes_and_no_more() {
        assert_eq!(above_prefix("2024"), "2025");
        assert_eq!(above_prefix("20241229"), "2024122:");
        assert_eq!(above_prefix("1015."), "1015/");
        for (prefixed, above) in [("20249999", true), ("2024", true), ("2025", false)] {
            assert_eq!(
                prefixed < above_prefix("2024").as_str(),
                above,
                "{prefixed}"
            );
        }
        assert_eq!(above_prefix(""), char::MAX.to_string());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("SM*", "SMITH"));
        assert!(wildcard("S?ITH", "SMITH"));
        assert!(wildcard("*", ""));
        assert!(wildcard("*TH", "SMITH"));
        assert!(!wildcard("SM?", "SMITH"));
        assert!(!wildcard("X*", "SMITH"));
        assert!(wildcard("A*B*C", "AxxBxxC"));
    }

    #[test]
    fn sequence_items_match_and_reduce() {
        let item = |code: &str, meaning: &str| {
            let mut i = InMemDicomObject::new_empty();
            i.put(DataElement::new(
                tags::CODE_VALUE,
                VR::SH,
                PrimitiveValue::from(code),
            ));
            i.put(DataElement::new(
                tags::CODE_MEANING,
                VR::LO,
                PrimitiveValue::from(meaning),
            ));
            i.put(DataElement::new(
                tags::CODING_SCHEME_DESIGNATOR,
                VR::SH,
                PrimitiveValue::from("DCM"),
            ));
            i
        };
        let stored = vec![item("A1", "CT HEAD"), item("B2", "CT CHEST")];
        let mut template = InMemDicomObject::new_empty();
        template.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from("B*"),
        ));
        template.put(DataElement::new(
            tags::CODE_MEANING,
            VR::LO,
            PrimitiveValue::Empty,
        ));
        assert!(has_filter(&template));
        let got = matching_items(&stored, &template);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0]
                .element(tags::CODE_MEANING)
                .unwrap()
                .to_str()
                .unwrap(),
            "CT CHEST"
        );
        assert!(
            got[0]
                .element_opt(tags::CODING_SCHEME_DESIGNATOR)
                .unwrap()
                .is_none(),
            "only requested attributes"
        );
        let mut nothing = InMemDicomObject::new_empty();
        nothing.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::Empty,
        ));
        assert!(!has_filter(&nothing));
        assert_eq!(matching_items(&stored, &nothing).len(), 2);
    }
}
