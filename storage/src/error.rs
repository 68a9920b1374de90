//! The storage error type. Unique-key and optimistic-lock failures are variants of their own so
//! the API can answer 409 with the field that clashed.

/// Result alias of this crate.
pub type StorageResult<T> = Result<T, StorageError>;

/// Everything a repository call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No row with that key (or none visible in the caller's data scope).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique constraint rejected the write; carries the field that clashed.
    #[error("{field} already exists")]
    Duplicate {
        /// The field (column) whose value already exists.
        field: String,
    },
    /// The row changed since the caller read it (`version` mismatch).
    #[error("the record was changed by someone else; reload and try again")]
    VersionConflict,
    /// The record is in a state that does not allow the operation (e.g. closing a closed alarm).
    #[error("{0}")]
    Conflict(String),
    /// A workflow step is not allowed in the record's current state (e.g. closing a hazard that
    /// was never re-inspected). Carries the current state so the caller can say what it is.
    #[error("not allowed while the {kind} is {state}: {message}")]
    WrongState {
        /// The kind of record (`inspection`, `hazard`, `case`, …).
        kind: &'static str,
        /// Its current state code.
        state: String,
        /// What was refused and why.
        message: String,
    },
    /// A visit beyond the enterprise's yearly inspect-once cap without an over-cap filing reason.
    #[error("the enterprise has had {visits} inspections this year; its yearly cap is {cap}: an over-cap filing with a reason is required")]
    OverCap {
        /// Inspections of the enterprise this year so far (cancelled ones excluded).
        visits: i64,
        /// The cap from its sector and supervision grade.
        cap: i64,
    },
    /// A value broke a rule the storage layer enforces (e.g. a reference to a missing row).
    #[error("{field}: {message}")]
    Invalid {
        /// Field name as the API calls it.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A migration failed to apply.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(#[from] std::io::Error),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// A [`StorageError::WrongState`].
    pub fn wrong_state(
        kind: &'static str,
        state: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::WrongState {
            kind,
            state: state.into(),
            message: message.into(),
        }
    }

    /// An `Invalid` error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = e {
            return StorageError::NotFound("row");
        }
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StorageError::Duplicate {
                    field: unique_field(db.message(), db.constraint()),
                };
            }
            if db.is_foreign_key_violation() {
                return StorageError::invalid(
                    db.constraint().map(constraint_field).unwrap_or("reference"),
                    "refers to a record that does not exist",
                );
            }
        }
        StorageError::Database(e)
    }
}

/// Name the column of a unique violation. SQLite says `UNIQUE constraint failed: table.col`,
/// PostgreSQL names the constraint (`table_col_key`).
fn unique_field(message: &str, constraint: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("UNIQUE constraint failed: ") {
        let first = rest.split(',').next().unwrap_or(rest).trim();
        return first.rsplit('.').next().unwrap_or(first).to_string();
    }
    if let Some(c) = constraint {
        return constraint_field(c).to_string();
    }
    "key".to_string()
}

fn constraint_field(c: &str) -> &str {
    let c = c
        .strip_suffix("_key")
        .or_else(|| c.strip_suffix("_fkey"))
        .unwrap_or(c);
    for table in [
        "accounts_",
        "enterprises_",
        "officers_",
        "inspection_items_",
        "org_units_",
        "account_applications_",
        "enterprise_key_units_",
        "vehicles_",
        "recorders_",
        "inspections_",
        "hazards_",
        "cases_",
        "case_documents_",
    ] {
        if let Some(col) = c.strip_prefix(table) {
            return col;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_fields_of_both_engines() {
        assert_eq!(
            unique_field("UNIQUE constraint failed: enterprises.uscc", None),
            "uscc"
        );
        assert_eq!(
            unique_field("duplicate key value", Some("accounts_username_key")),
            "username"
        );
        assert_eq!(constraint_field("officers_org_unit_id_fkey"), "org_unit_id");
    }
}
