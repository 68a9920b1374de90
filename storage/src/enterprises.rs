//! The enterprise registry (一企一档): dossier fields, key-unit years, tags, bigram search.
//!
//! Every write keeps `search_text` and the bigram rows of `enterprise_grams` in step with the
//! dossier in the same transaction. Updates use optimistic locking on `version`. Bulk import is
//! all-or-nothing: one transaction, after every row has passed validation.

use crate::db::BeginWrite;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::org_units::{OrgUnit, Scope};
use crate::personal_data::PRINCIPAL_PHONE;
use crate::{search, uscc, Db, Page, PageRequest, StorageError, StorageResult};

/// Supervised sectors (监管行业): code and Chinese name.
pub const SECTORS: &[(&str, &str)] = &[
    ("01", "煤矿"),
    ("02", "非煤矿山"),
    ("03", "危险化学品"),
    ("04", "烟花爆竹"),
    ("05", "工贸"),
    ("06", "其他"),
];

/// Ownership types (国民经济类型).
pub const OWNERSHIP_TYPES: &[&str] = &[
    "国有集体",
    "联营",
    "私营",
    "有限责任",
    "股份有限",
    "股份合作",
    "港澳台",
    "外商投资",
    "分公司",
    "其他",
];

/// Enterprise statuses.
pub const STATUSES: &[&str] = &["operating", "suspended", "closed"];

/// A validation problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Field name as in the API.
    pub field: String,
    /// What is wrong (English; the UI shows it).
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Dossier fields as entered (create, update, import row).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseInput {
    /// Name.
    pub name: String,
    /// USCC.
    pub uscc: String,
    /// District (brigade org unit).
    pub district_id: String,
    /// Town (org unit under the district).
    #[serde(default)]
    pub town_id: Option<String>,
    /// SOE group (org unit).
    #[serde(default)]
    pub soe_group_id: Option<String>,
    /// Address.
    #[serde(default)]
    pub address: String,
    /// WGS-84 longitude.
    #[serde(default)]
    pub lon: Option<f64>,
    /// WGS-84 latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Legal representative.
    #[serde(default)]
    pub legal_representative: String,
    /// Principal person in charge.
    #[serde(default)]
    pub principal_name: String,
    /// Principal's phone.
    #[serde(default)]
    pub principal_phone: String,
    /// Ownership type (one of [`OWNERSHIP_TYPES`]).
    pub ownership_type: String,
    /// GB/T 4754-2017 industry code (section letter + up to 4 digits, e.g. `C3311`).
    pub industry_code: String,
    /// Supervised sector code (one of [`SECTORS`]).
    pub sector: String,
    /// Years on the key-unit list.
    #[serde(default)]
    pub key_unit_years: Vec<i32>,
    /// `operating`, `suspended`, `closed`.
    #[serde(default = "default_status")]
    pub status: String,
    /// Tags / risk tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_status() -> String {
    "operating".into()
}

/// Whether `code` looks like a GB/T 4754-2017 code: a section letter A–T, optionally followed by
/// a 2-digit division, 3-digit group or 4-digit class.
pub fn valid_industry_code(code: &str) -> bool {
    let b = code.as_bytes();
    !b.is_empty()
        && (b'A'..=b'T').contains(&b[0])
        && matches!(b.len(), 1 | 3 | 4 | 5)
        && b[1..].iter().all(u8::is_ascii_digit)
}

fn valid_phone(p: &str) -> bool {
    let digits = p.chars().filter(char::is_ascii_digit).count();
    (7..=20).contains(&digits)
        && p.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | ' ' | '(' | ')'))
}

impl EnterpriseInput {
    /// Trim text fields and uppercase the USCC and industry code.
    pub fn normalize(&mut self) {
        for s in [
            &mut self.name,
            &mut self.address,
            &mut self.legal_representative,
            &mut self.principal_name,
            &mut self.principal_phone,
            &mut self.ownership_type,
            &mut self.sector,
            &mut self.status,
            &mut self.district_id,
        ] {
            *s = s.trim().to_string();
        }
        self.uscc = self.uscc.trim().to_ascii_uppercase();
        self.industry_code = self.industry_code.trim().to_ascii_uppercase();
        for o in [&mut self.town_id, &mut self.soe_group_id] {
            if o.as_deref().map(str::trim).is_some_and(str::is_empty) {
                *o = None;
            }
        }
        self.tags = self
            .tags
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        self.tags.dedup();
        self.key_unit_years.sort_unstable();
        self.key_unit_years.dedup();
    }

    /// Field rules that need no database. Returns every problem, not just the first.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let n = self.name.chars().count();
        if n == 0 {
            errs.push(FieldError::new("name", "must not be empty"));
        } else if n > 200 {
            errs.push(FieldError::new("name", "at most 200 characters"));
        }
        if let Err(e) = uscc::validate(&self.uscc) {
            errs.push(FieldError::new(
                "uscc",
                format!("invalid unified social credit code: {e}"),
            ));
        }
        if self.district_id.is_empty() {
            errs.push(FieldError::new("district_id", "must not be empty"));
        }
        if self.address.chars().count() > 300 {
            errs.push(FieldError::new("address", "at most 300 characters"));
        }
        match (self.lon, self.lat) {
            (Some(lon), Some(lat)) => {
                if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
                    errs.push(FieldError::new("lon", "must be a longitude in -180..180"));
                }
                if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
                    errs.push(FieldError::new("lat", "must be a latitude in -90..90"));
                }
            }
            (None, None) => {}
            (None, Some(_)) => {
                errs.push(FieldError::new("lon", "longitude and latitude go together"))
            }
            (Some(_), None) => {
                errs.push(FieldError::new("lat", "longitude and latitude go together"))
            }
        }
        if !self.principal_phone.is_empty() && !valid_phone(&self.principal_phone) {
            errs.push(FieldError::new("principal_phone", "not a phone number"));
        }
        if !OWNERSHIP_TYPES.contains(&self.ownership_type.as_str()) {
            errs.push(FieldError::new(
                "ownership_type",
                format!("must be one of {}", OWNERSHIP_TYPES.join("、")),
            ));
        }
        if !valid_industry_code(&self.industry_code) {
            errs.push(FieldError::new(
                "industry_code",
                "must be a GB/T 4754-2017 code such as C3311",
            ));
        }
        if !SECTORS.iter().any(|(c, _)| *c == self.sector) {
            errs.push(FieldError::new("sector", "must be one of 01–06"));
        }
        if !STATUSES.contains(&self.status.as_str()) {
            errs.push(FieldError::new(
                "status",
                "must be operating, suspended or closed",
            ));
        }
        if self
            .key_unit_years
            .iter()
            .any(|y| !(2000..=2100).contains(y))
        {
            errs.push(FieldError::new(
                "key_unit_years",
                "years must be between 2000 and 2100",
            ));
        }
        if self.tags.len() > 50 || self.tags.iter().any(|t| t.chars().count() > 40) {
            errs.push(FieldError::new(
                "tags",
                "at most 50 tags of at most 40 characters",
            ));
        }
        errs
    }

    /// Rules against the org tree: the district is a brigade, the town lies under it, the SOE
    /// group is an SOE group. `units` maps id → unit.
    pub fn validate_refs(&self, units: &HashMap<String, OrgUnit>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match units.get(&self.district_id) {
            Some(u) if u.kind == "brigade" => {}
            Some(_) => errs.push(FieldError::new("district_id", "is not a district brigade")),
            None => errs.push(FieldError::new("district_id", "no such org unit")),
        }
        if let Some(t) = &self.town_id {
            match units.get(t) {
                Some(u)
                    if u.kind == "town"
                        && u.parent_id.as_deref() == Some(self.district_id.as_str()) => {}
                Some(_) => errs.push(FieldError::new("town_id", "is not a town of the district")),
                None => errs.push(FieldError::new("town_id", "no such org unit")),
            }
        }
        if let Some(s) = &self.soe_group_id {
            match units.get(s) {
                Some(u) if u.kind == "soe_group" => {}
                Some(_) => errs.push(FieldError::new("soe_group_id", "is not an SOE group")),
                None => errs.push(FieldError::new("soe_group_id", "no such org unit")),
            }
        }
        errs
    }

    fn search_text(&self) -> String {
        [
            &self.name,
            &self.uscc,
            &self.address,
            &self.legal_representative,
            &self.principal_name,
        ]
        .iter()
        .map(|s| search::normalize(s))
        .collect::<Vec<_>>()
        .join("\u{1f}")
    }

    fn grams(&self) -> std::collections::BTreeSet<String> {
        search::index_grams([
            self.name.as_str(),
            self.uscc.as_str(),
            self.address.as_str(),
            self.legal_representative.as_str(),
            self.principal_name.as_str(),
        ])
    }
}

/// A stored enterprise with the names of its org units.
#[derive(Debug, Clone, Serialize)]
pub struct Enterprise {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// USCC.
    pub uscc: String,
    /// District (brigade) id.
    pub district_id: String,
    /// District name.
    pub district_name: String,
    /// Town id.
    pub town_id: Option<String>,
    /// Town name.
    pub town_name: Option<String>,
    /// SOE group id.
    pub soe_group_id: Option<String>,
    /// SOE group name.
    pub soe_group_name: Option<String>,
    /// Address.
    pub address: String,
    /// WGS-84 longitude.
    pub lon: Option<f64>,
    /// WGS-84 latitude.
    pub lat: Option<f64>,
    /// Legal representative.
    pub legal_representative: String,
    /// Principal person.
    pub principal_name: String,
    /// Principal's phone.
    pub principal_phone: String,
    /// Ownership type.
    pub ownership_type: String,
    /// Industry code.
    pub industry_code: String,
    /// Supervised sector code.
    pub sector: String,
    /// Key-unit years.
    pub key_unit_years: Vec<i32>,
    /// Status.
    pub status: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
    /// Optimistic-lock version.
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    uscc: String,
    district_id: String,
    town_id: Option<String>,
    soe_group_id: Option<String>,
    address: String,
    lon: Option<f64>,
    lat: Option<f64>,
    legal_representative: String,
    principal_name: String,
    principal_phone: String,
    ownership_type: String,
    industry_code: String,
    sector: String,
    status: String,
    tags: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl Row {
    /// With org unit names from `names` and the key-unit years.
    fn into_enterprise(
        self,
        names: &HashMap<String, String>,
        key_unit_years: Vec<i32>,
    ) -> Enterprise {
        let name_of = |id: &Option<String>| id.as_ref().and_then(|i| names.get(i)).cloned();
        Enterprise {
            key_unit_years,
            tags: serde_json::from_str(&self.tags).unwrap_or_default(),
            district_name: names.get(&self.district_id).cloned().unwrap_or_default(),
            town_name: name_of(&self.town_id),
            soe_group_name: name_of(&self.soe_group_id),
            id: self.id,
            name: self.name,
            uscc: self.uscc,
            district_id: self.district_id,
            town_id: self.town_id,
            soe_group_id: self.soe_group_id,
            address: self.address,
            lon: self.lon,
            lat: self.lat,
            legal_representative: self.legal_representative,
            principal_name: self.principal_name,
            principal_phone: self.principal_phone,
            ownership_type: self.ownership_type,
            industry_code: self.industry_code,
            sector: self.sector,
            status: self.status,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            version: self.version,
        }
    }
}

/// Filter of an enterprise list.
#[derive(Debug, Clone, Default)]
pub struct EnterpriseFilter {
    /// Substring of name, USCC, address, legal representative or principal.
    pub q: Option<String>,
    /// District.
    pub district_id: Option<String>,
    /// Town.
    pub town_id: Option<String>,
    /// SOE group.
    pub soe_group_id: Option<String>,
    /// Sector code.
    pub sector: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// On the key-unit list of this year.
    pub key_unit_year: Option<i32>,
    /// Exact USCC.
    pub uscc: Option<String>,
    /// The principal's phone: its full number or its last four digits.
    pub phone: Option<String>,
    /// Sort key: `name`, `uscc`, `updated_at`, `district`, `industry_code`, `sector`, each with a
    /// leading `-` for descending.
    pub sort: Option<String>,
}

/// The enterprise repository.
#[derive(Debug, Clone, Copy)]
pub struct EnterpriseRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Enterprises.
    pub fn enterprises(&self) -> EnterpriseRepo<'_> {
        EnterpriseRepo { db: self }
    }
}

/// The enterprise columns; org unit names and key-unit years are added by
/// [`EnterpriseRepo::decorate`], so page queries stay single-table (cheap to plan).
const SELECT: &str = "SELECT e.id, e.name, e.uscc, e.district_id, e.town_id, e.soe_group_id, e.address, e.lon, e.lat, \
     e.legal_representative, e.principal_name, e.principal_phone_sealed AS principal_phone, e.ownership_type, e.industry_code, e.sector, \
     e.status, e.tags, e.created_at_ms, e.updated_at_ms, e.version FROM enterprises e";

/// The SQL condition bounding enterprises `e` to a scope.
pub(crate) fn scope_condition(scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".to_string(),
        Scope::Subtree(root) => {
            let r = b.s(root.clone());
            format!(
                "(e.district_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {r}) \
                 OR e.town_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {r}) \
                 OR e.soe_group_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {r}))"
            )
        }
    }
}

impl EnterpriseRepo<'_> {
    async fn org_map(&self) -> StorageResult<HashMap<String, OrgUnit>> {
        Ok(self
            .db
            .org_units()
            .list()
            .await?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect())
    }

    /// Validate an input fully (fields and references); `Err` lists every problem.
    pub async fn check(&self, input: &EnterpriseInput) -> StorageResult<Vec<FieldError>> {
        let mut errs = input.validate();
        errs.extend(input.validate_refs(&self.org_map().await?));
        Ok(errs)
    }

    /// Create one enterprise (the input must be normalised and valid).
    pub async fn create(
        &self,
        input: &EnterpriseInput,
        audit: &AuditEntry,
    ) -> StorageResult<Enterprise> {
        let ids = self
            .insert_many(std::slice::from_ref(input), audit, "enterprise.create")
            .await?;
        self.get(&Scope::All, &ids[0]).await
    }

    /// Insert many enterprises in one transaction (all or nothing); one audit row per enterprise
    /// with `action`. Returns the new ids in input order.
    pub async fn insert_many(
        &self,
        inputs: &[EnterpriseInput],
        audit: &AuditEntry,
        action: &str,
    ) -> StorageResult<Vec<String>> {
        self.insert_many_reporting(inputs, audit, action, &|_| {})
            .await
    }

    /// [`Self::insert_many`], calling `progress` with the number of rows written so far (every
    /// 100 rows and at the end, before the commit).
    pub async fn insert_many_reporting(
        &self,
        inputs: &[EnterpriseInput],
        audit: &AuditEntry,
        action: &str,
        progress: &(dyn Fn(usize) + Sync),
    ) -> StorageResult<Vec<String>> {
        let now = audit.at_ms;
        let mut ids = Vec::with_capacity(inputs.len());
        let mut grams: Vec<(String, String, String)> = Vec::new();
        let phones = inputs
            .iter()
            .map(|i| self.db.seal_phone(PRINCIPAL_PHONE, &i.principal_phone))
            .collect::<StorageResult<Vec<_>>>()?;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            for (input, phone) in inputs.iter().zip(&phones) {
                let id = crate::new_id();
                sqlx::query("INSERT INTO enterprises (id, name, uscc, district_id, town_id, soe_group_id, address, lon, lat, \
                             legal_representative, principal_name, principal_phone_sealed, principal_phone_index, principal_phone_last4_index, \
                             ownership_type, industry_code, sector, status, tags, search_text, created_at_ms, updated_at_ms, version) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $21, 1)")
                    .bind(&id).bind(&input.name).bind(&input.uscc).bind(&input.district_id).bind(&input.town_id)
                    .bind(&input.soe_group_id).bind(&input.address).bind(input.lon).bind(input.lat)
                    .bind(&input.legal_representative).bind(&input.principal_name)
                    .bind(&phone.sealed).bind(&phone.index).bind(&phone.last4_index)
                    .bind(&input.ownership_type).bind(&input.industry_code).bind(&input.sector).bind(&input.status)
                    .bind(serde_json::to_string(&input.tags).expect("tags serialise")).bind(input.search_text()).bind(now)
                    .execute(&mut *tx).await
                    .map_err(StorageError::from)?;
                for y in &input.key_unit_years {
                    sqlx::query("INSERT INTO enterprise_key_units (enterprise_id, year) VALUES ($1, $2)")
                        .bind(&id).bind(i64::from(*y)).execute(&mut *tx).await?;
                }
                grams.extend(input.grams().into_iter().map(|g| (g, input.name.clone(), id.clone())));
                let a = AuditEntry { action: action.to_string(), ..audit.clone() }
                    .target("enterprise", &id)
                    .details(serde_json::json!({"name": input.name, "uscc": input.uscc}));
                insert_audit!(&mut *tx, &a)?;
                ids.push(id);
                if ids.len() % 100 == 0 {
                    progress(ids.len());
                }
            }
            for chunk in grams.chunks(GRAM_BATCH) {
                let (sql, b) = gram_insert(chunk);
                bind_args!(sqlx::query(&sql), b.args).execute(&mut *tx).await?;
            }
            progress(ids.len());
            tx.commit().await?;
        });
        self.db.counts.clear();
        Ok(ids)
    }

    /// Replace the dossier of `id` if its version is still `version`.
    pub async fn update(
        &self,
        scope: &Scope,
        id: &str,
        version: i64,
        input: &EnterpriseInput,
        audit: &AuditEntry,
    ) -> StorageResult<Enterprise> {
        let before = self.get(scope, id).await?;
        let now = audit.at_ms;
        let audit = audit
            .clone()
            .target("enterprise", id)
            .details(diff(&before, input));
        let phone = self
            .db
            .seal_phone(PRINCIPAL_PHONE, &input.principal_phone)?;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE enterprises SET name = $3, uscc = $4, district_id = $5, town_id = $6, soe_group_id = $7, \
                                 address = $8, lon = $9, lat = $10, legal_representative = $11, principal_name = $12, \
                                 principal_phone_sealed = $13, principal_phone_index = $14, principal_phone_last4_index = $15, \
                                 ownership_type = $16, industry_code = $17, sector = $18, status = $19, tags = $20, search_text = $21, \
                                 updated_at_ms = $22, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(version).bind(&input.name).bind(&input.uscc).bind(&input.district_id).bind(&input.town_id)
                .bind(&input.soe_group_id).bind(&input.address).bind(input.lon).bind(input.lat)
                .bind(&input.legal_representative).bind(&input.principal_name)
                .bind(&phone.sealed).bind(&phone.index).bind(&phone.last4_index)
                .bind(&input.ownership_type).bind(&input.industry_code).bind(&input.sector).bind(&input.status)
                .bind(serde_json::to_string(&input.tags).expect("tags serialise")).bind(input.search_text()).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StorageError::VersionConflict);
            }
            sqlx::query("DELETE FROM enterprise_key_units WHERE enterprise_id = $1").bind(id).execute(&mut *tx).await?;
            for y in &input.key_unit_years {
                sqlx::query("INSERT INTO enterprise_key_units (enterprise_id, year) VALUES ($1, $2)")
                    .bind(id).bind(i64::from(*y)).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM enterprise_grams WHERE enterprise_id = $1").bind(id).execute(&mut *tx).await?;
            let grams: Vec<(String, String, String)> = input.grams().into_iter().map(|g| (g, input.name.clone(), id.to_string())).collect();
            for chunk in grams.chunks(GRAM_BATCH) {
                let (sql, b) = gram_insert(chunk);
                bind_args!(sqlx::query(&sql), b.args).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.db.counts.clear();
        self.get(scope, id).await
    }

    /// Delete an enterprise in `scope`.
    pub async fn delete(&self, scope: &Scope, id: &str, audit: &AuditEntry) -> StorageResult<()> {
        let before = self.get(scope, id).await?;
        let audit = audit
            .clone()
            .target("enterprise", id)
            .details(serde_json::json!({"name": before.name, "uscc": before.uscc}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM enterprise_grams WHERE enterprise_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM enterprise_key_units WHERE enterprise_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM enterprises WHERE id = $1").bind(id).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.db.counts.clear();
        Ok(())
    }

    /// One enterprise, if visible in `scope` (otherwise `NotFound`, so ids outside the scope
    /// are not even confirmed to exist).
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Enterprise> {
        let mut b = SqlBuilder::default();
        let idp = b.s(id);
        let cond = scope_condition(scope, &mut b);
        let sql = format!("{SELECT} WHERE e.id = {idp} AND {cond}");
        let row: Option<Row> = with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, Row>(&sql), b.args).fetch_optional(p).await?);
        let row = row.ok_or(StorageError::NotFound("enterprise"))?;
        Ok(self.decorate(vec![row]).await?.remove(0))
    }

    /// Rows into enterprises: org unit names from the cached map, key-unit years in one query.
    async fn decorate(&self, rows: Vec<Row>) -> StorageResult<Vec<Enterprise>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let names = self.db.org_unit_names().await?;
        let mut b = SqlBuilder::default();
        let ph: Vec<String> = rows.iter().map(|r| b.s(r.id.clone())).collect();
        let sql = format!(
            "SELECT enterprise_id, year FROM enterprise_key_units WHERE enterprise_id IN ({}) ORDER BY year",
            ph.join(", ")
        );
        let years: Vec<(String, i64)> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        let mut by_id: HashMap<String, Vec<i32>> = HashMap::new();
        for (id, y) in years {
            by_id.entry(id).or_default().push(y as i32);
        }
        rows.into_iter()
            .map(|mut r| {
                r.principal_phone = self.db.open_phone(PRINCIPAL_PHONE, &r.principal_phone)?;
                let y = by_id.remove(&r.id).unwrap_or_default();
                Ok(r.into_enterprise(&names, y))
            })
            .collect()
    }

    /// The principal's phone of `id` as stored: sealed value, full-number index, last-four index
    /// (for tests and audits of the sealing; never for display).
    pub async fn stored_phone(
        &self,
        id: &str,
    ) -> StorageResult<(String, Option<String>, Option<String>)> {
        with_pool!(self.db, p => Ok(sqlx::query_as(
            "SELECT principal_phone_sealed, principal_phone_index, principal_phone_last4_index FROM enterprises WHERE id = $1")
            .bind(id).fetch_one(p).await?))
    }

    /// Whether an enterprise exists at all (regardless of scope).
    pub async fn exists(&self, id: &str) -> StorageResult<bool> {
        with_pool!(self.db, p => {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM enterprises WHERE id = $1").bind(id).fetch_one(p).await?;
            Ok(n > 0)
        })
    }

    /// The USCCs among `codes` that are already registered.
    pub async fn existing_usccs(&self, codes: &[String]) -> StorageResult<Vec<String>> {
        self.db.existing_values("enterprises", "uscc", codes).await
    }

    /// Search and list in `scope`.
    pub async fn list(
        &self,
        scope: &Scope,
        f: &EnterpriseFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Enterprise>> {
        let mut b = SqlBuilder::default();
        // Conditions on the enterprise row `e`; the grams of the query are kept apart.
        let mut conds = Vec::new();
        if let Scope::Subtree(_) = scope {
            conds.push(scope_condition(scope, &mut b));
        }
        let mut grams = Vec::new();
        let mut gram_text = Vec::new();
        let mut like: Option<String> = None;
        if let Some(q) =
            f.q.as_deref()
                .map(search::normalize)
                .filter(|q| !q.is_empty())
        {
            gram_text = search::query_grams(&q);
            grams = gram_text.iter().map(|g| b.s(g.clone())).collect();
            // A two-character query is exactly its one gram: the index answers it alone. Longer
            // queries (and one-character ones) are confirmed on the text.
            if !(grams.len() == 1 && q.chars().count() == 2) {
                like = Some(b.s(search::like_pattern(&q)));
            }
        }
        for (col, v) in [
            ("e.district_id", &f.district_id),
            ("e.town_id", &f.town_id),
            ("e.soe_group_id", &f.soe_group_id),
            ("e.sector", &f.sector),
            ("e.status", &f.status),
            ("e.uscc", &f.uscc),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                conds.push(format!("{col} = {}", b.s(v.clone())));
            }
        }
        if let Some(q) = f.phone.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            if self
                .db
                .field_cipher()?
                .phone_search(PRINCIPAL_PHONE, q)
                .is_none()
            {
                return Err(StorageError::invalid(
                    "phone",
                    "a full phone number (7–20 digits) or its last four digits",
                ));
            }
            let c = self.db.phone_condition(
                PRINCIPAL_PHONE,
                q,
                "e.principal_phone_index",
                "e.principal_phone_last4_index",
                &mut b,
            );
            conds.extend(c);
        }
        if let Some(y) = f.key_unit_year {
            conds.push(format!(
                "e.id IN (SELECT enterprise_id FROM enterprise_key_units WHERE year = {})",
                b.i(i64::from(y))
            ));
        }
        let sort = f.sort.as_deref().unwrap_or("name");
        let order = match sort {
            "-name" => "e.name DESC, e.id DESC",
            "uscc" => "e.uscc, e.id",
            "-uscc" => "e.uscc DESC, e.id",
            "updated_at" => "e.updated_at_ms, e.id",
            "-updated_at" => "e.updated_at_ms DESC, e.id",
            "name" => "e.name, e.id",
            "district" => "d.code, e.name, e.id",
            "-district" => "d.code DESC, e.name, e.id",
            "industry_code" => "e.industry_code, e.name, e.id",
            "-industry_code" => "e.industry_code DESC, e.name, e.id",
            "sector" => "e.sector, e.name, e.id",
            "-sector" => "e.sector DESC, e.name, e.id",
            other => {
                return Err(StorageError::invalid(
                    "sort",
                    format!("unknown sort key {other:?}"),
                ))
            }
        };
        let (count_sql, ids_sql, lb) = if !grams.is_empty() && (sort == "name" || sort == "-name") {
            // Driven by the index (gram, name, enterprise_id) of the query's rarest gram: it
            // yields candidates in name order, so the first page stops early; the other grams
            // are point look-ups on the same index, and the enterprise row is read only when a
            // condition (scope, filter, the text check) needs it.
            let mut rarest = 0;
            let mut fewest = i64::MAX;
            for (i, g) in gram_text.iter().enumerate() {
                let n = self.gram_frequency(g).await?;
                if n < fewest {
                    (rarest, fewest) = (i, n);
                }
            }
            let mut w = vec![format!("g.gram = {}", grams[rarest])];
            for (i, g) in grams.iter().enumerate() {
                if i != rarest {
                    w.push(format!(
                        "EXISTS (SELECT 1 FROM enterprise_grams g2 WHERE g2.gram = {g} AND g2.name = g.name AND g2.enterprise_id = g.enterprise_id)"
                    ));
                }
            }
            // The page: the enterprise row is read for the candidates in name order until a
            // page is full.
            let mut page_w = w.clone();
            let mut e_conds = conds.clone();
            if let Some(pat) = &like {
                e_conds.push(format!("e.search_text LIKE {pat} ESCAPE '\\'"));
            }
            if !e_conds.is_empty() {
                page_w.push(format!(
                    "EXISTS (SELECT 1 FROM enterprises e WHERE e.id = g.enterprise_id AND {})",
                    e_conds.join(" AND ")
                ));
            }
            // The total: when only the text is to be checked, most matches are in the name,
            // which the gram row carries, so count those off the index and read enterprise rows
            // only for candidates whose name does not hold the query. (An `OR EXISTS` would let
            // PostgreSQL hash the sub-select over every enterprise.)
            let count_w = match (&like, conds.is_empty()) {
                (Some(pat), true) => {
                    let base = w.join(" AND ");
                    format!(
                        "SELECT (SELECT COUNT(*) FROM enterprise_grams g WHERE {base} AND g.name LIKE {pat} ESCAPE '\\') + \
                         (SELECT COUNT(*) FROM enterprise_grams g WHERE {base} AND g.name NOT LIKE {pat} ESCAPE '\\' \
                          AND EXISTS (SELECT 1 FROM enterprises e WHERE e.id = g.enterprise_id AND e.search_text LIKE {pat} ESCAPE '\\'))"
                    )
                }
                _ => format!(
                    "SELECT COUNT(*) FROM enterprise_grams g WHERE {}",
                    page_w.join(" AND ")
                ),
            };
            let page_w = page_w.join(" AND ");
            let dir = if sort == "-name" { "DESC" } else { "ASC" };
            let mut lb = SqlBuilder {
                args: b.args.clone(),
            };
            let lim = lb.i(page.page_size);
            let off = lb.i(page.offset());
            (
                count_w,
                format!("SELECT g.enterprise_id FROM enterprise_grams g WHERE {page_w} ORDER BY g.name {dir}, g.enterprise_id {dir} LIMIT {lim} OFFSET {off}"),
                lb,
            )
        } else {
            if let Some(pat) = &like {
                conds.push(format!("e.search_text LIKE {pat} ESCAPE '\\'"));
            }
            if !grams.is_empty() {
                let parts: Vec<String> = grams
                    .iter()
                    .map(|g| format!("SELECT enterprise_id FROM enterprise_grams WHERE gram = {g}"))
                    .collect();
                conds.push(format!("e.id IN ({})", parts.join(" INTERSECT ")));
            }
            let w = if conds.is_empty() {
                "1 = 1".to_string()
            } else {
                conds.join(" AND ")
            };
            let district_join = if order.starts_with("d.") {
                "JOIN org_units d ON d.id = e.district_id"
            } else {
                ""
            };
            let mut lb = SqlBuilder {
                args: b.args.clone(),
            };
            let lim = lb.i(page.page_size);
            let off = lb.i(page.offset());
            (
                format!("SELECT COUNT(*) FROM enterprises e WHERE {w}"),
                format!("SELECT e.id FROM enterprises e {district_join} WHERE {w} ORDER BY {order} LIMIT {lim} OFFSET {off}"),
                lb,
            )
        };
        let count_key = format!("{count_sql}|{:?}", b.args);
        let cached = self.db.counts.get(&count_key);
        with_pool!(self.db, p => {
            let total: i64 = match cached {
                Some(n) => n,
                None => {
                    let n = bind_args!(sqlx::query_scalar(&count_sql), b.args).fetch_one(p).await?;
                    self.db.counts.put(count_key, n);
                    n
                }
            };
            // The page's ids in order, then their rows (one simple query each).
            let ids: Vec<String> = bind_args!(sqlx::query_scalar(&ids_sql), lb.args).fetch_all(p).await?;
            let mut rows: Vec<Row> = Vec::new();
            if !ids.is_empty() {
                let mut rb = SqlBuilder::default();
                let ph: Vec<String> = ids.iter().map(|i| rb.s(i.clone())).collect();
                let sql = format!("{SELECT} WHERE e.id IN ({})", ph.join(", "));
                rows = bind_args!(sqlx::query_as::<_, Row>(&sql), rb.args).fetch_all(p).await?;
                let pos: HashMap<&String, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
                rows.sort_by_key(|r| pos.get(&r.id).copied().unwrap_or(usize::MAX));
            }
            let items = self.decorate(rows).await?;
            Ok(Page { items, total, page: page.page, page_size: page.page_size })
        })
    }

    /// Refresh the planner's statistics (and PostgreSQL's visibility map) of the registry tables
    /// after a bulk load, so searches get their index plans at once instead of after the next
    /// autovacuum.
    pub async fn refresh_statistics(&self) -> StorageResult<()> {
        match self.db.engine() {
            crate::Engine::Postgres => {
                self.db
                    .execute_raw(
                        "VACUUM (ANALYZE) enterprises, enterprise_grams, enterprise_key_units",
                    )
                    .await?;
            }
            crate::Engine::Sqlite => {
                self.db.execute_raw("ANALYZE").await?;
            }
        }
        Ok(())
    }

    /// Number of enterprises indexed under `gram` (cached like search totals).
    async fn gram_frequency(&self, gram: &str) -> StorageResult<i64> {
        let key = format!("gram|{gram}");
        if let Some(n) = self.db.counts.get(&key) {
            return Ok(n);
        }
        let n: i64 = with_pool!(self.db, p => sqlx::query_scalar("SELECT COUNT(*) FROM enterprise_grams WHERE gram = $1").bind(gram).fetch_one(p).await?);
        self.db.counts.put(key, n);
        Ok(n)
    }

    /// Number of enterprises (all scopes).
    pub async fn count(&self) -> StorageResult<i64> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar("SELECT COUNT(*) FROM enterprises").fetch_one(p).await?))
    }
}

/// Rows per multi-row insert into `enterprise_grams` (3 parameters each). Kept near 1,000
/// parameters: sqlx binds each SQLite parameter through `sqlite3_bind_parameter_name`, a linear
/// scan, so a statement's binding cost grows with the square of its parameter count.
const GRAM_BATCH: usize = 330;

/// One multi-row insert of (gram, name, enterprise id) rows.
fn gram_insert(rows: &[(String, String, String)]) -> (String, SqlBuilder) {
    let mut b = SqlBuilder::default();
    let values: Vec<String> = rows
        .iter()
        .map(|(g, n, id)| {
            format!(
                "({}, {}, {})",
                b.s(g.clone()),
                b.s(n.clone()),
                b.s(id.clone())
            )
        })
        .collect();
    (
        format!(
            "INSERT INTO enterprise_grams (gram, name, enterprise_id) VALUES {}",
            values.join(", ")
        ),
        b,
    )
}

/// The changed fields of an update, for the audit row.
/// The changed fields, from → to; the principal's phone (personal data, sealed at rest) only as
/// changed, never its value.
fn diff(before: &Enterprise, after: &EnterpriseInput) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let b = serde_json::to_value(before).unwrap_or_default();
    let a = serde_json::to_value(after).unwrap_or_default();
    if let (Some(bo), Some(ao)) = (b.as_object(), a.as_object()) {
        for (k, av) in ao {
            if bo.get(k) != Some(av) {
                let change = if k == "principal_phone" {
                    serde_json::json!({"changed": true})
                } else {
                    serde_json::json!({"from": bo.get(k), "to": av})
                };
                m.insert(k.clone(), change);
            }
        }
    }
    serde_json::Value::Object(m)
}
