//! Work orders (工单) between the corps and the brigades, replacing paper and fax.
//!
//! A sender unit dispatches an order (title, body, attachments, deadline) to one or many
//! recipient units. Each recipient runs its own loop:
//!
//! ```text
//! dispatched ──receive──▶ received ──reply──▶ replied ──accept──▶ accepted
//!                              ▲                  │
//!                              └──────return──────┘   (the sender finds the reply insufficient)
//! ```
//!
//! The sender reminds recipients that have not replied (counted, timestamped) and closes the
//! order once every recipient is accepted (or earlier, with a note). Visible to the sender's
//! subtree and to each recipient's subtree.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, Arg, SqlBuilder};
use crate::enforcement::next_seq;
use crate::org_units::Scope;
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// A new work order.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderInput {
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Reply deadline, a date in Asia/Shanghai (`YYYY-MM-DD`, end of that day).
    pub deadline: String,
    /// Recipient org units (one or many).
    pub recipient_unit_ids: Vec<String>,
    /// Attachment blob keys (from `POST /attachments`).
    #[serde(default)]
    pub attachment_keys: Vec<String>,
}

/// A recipient's progress.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Recipient {
    /// Unit.
    pub unit_id: String,
    /// Unit name.
    #[sqlx(default)]
    pub unit_name: String,
    /// `dispatched`, `received`, `replied`, `returned`, `accepted`.
    pub status: String,
    /// Received.
    #[serde(
        rename = "received_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub received_at_ms: Option<i64>,
    /// Reply.
    pub reply: Option<String>,
    /// Reply attachments (JSON array of keys).
    #[serde(skip)]
    pub reply_attachments: String,
    /// Replied.
    #[serde(
        rename = "replied_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub replied_at_ms: Option<i64>,
    /// Why the last reply was returned.
    pub returned_reason: Option<String>,
    /// Accepted.
    #[serde(
        rename = "accepted_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at_ms: Option<i64>,
    /// Last reminder.
    #[serde(
        rename = "reminded_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reminded_at_ms: Option<i64>,
    /// Reminders sent.
    pub reminders: i64,
}

/// A work order.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkOrder {
    /// Id.
    pub id: String,
    /// Number (工单编号).
    pub number: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Sender unit.
    pub from_unit_id: String,
    /// Sender unit name.
    #[sqlx(default)]
    pub from_unit_name: String,
    /// Reply deadline.
    #[serde(
        rename = "deadline",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub deadline_ms: i64,
    /// Attachment keys (JSON array).
    #[serde(skip)]
    pub attachments: String,
    /// `open`, `closed`.
    pub status: String,
    /// Closing note.
    pub close_note: Option<String>,
    /// Closed.
    #[serde(
        rename = "closed_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at_ms: Option<i64>,
    /// Created.
    #[serde(
        rename = "created_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub created_at_ms: i64,
    /// Recipients.
    #[sqlx(skip)]
    pub recipients: Vec<Recipient>,
}

impl WorkOrder {
    /// Attachment keys.
    pub fn attachment_keys(&self) -> Vec<String> {
        serde_json::from_str(&self.attachments).unwrap_or_default()
    }

    /// Open and past its deadline with a recipient that has not replied.
    pub fn overdue(&self, now_ms: i64) -> bool {
        self.status == "open"
            && self.deadline_ms < now_ms
            && self
                .recipients
                .iter()
                .any(|r| matches!(r.status.as_str(), "dispatched" | "received" | "returned"))
    }
}

/// Which orders to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mailbox {
    /// Sent by the caller's units.
    Outbox,
    /// Addressed to the caller's units.
    Inbox,
}

/// The work order repository.
#[derive(Debug, Clone, Copy)]
pub struct WorkOrderRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Work orders.
    pub fn work_orders(&self) -> WorkOrderRepo<'_> {
        WorkOrderRepo { db: self }
    }
}

const COLS: &str = "w.id, w.number, w.title, w.body, w.from_unit_id, w.deadline_ms, w.attachments, w.status, w.close_note, w.closed_at_ms, w.created_at_ms";

fn subtree(col: &str, scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".into(),
        Scope::Subtree(root) => format!(
            "{col} IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
            b.s(root.clone())
        ),
    }
}

impl WorkOrderRepo<'_> {
    async fn decorate(&self, mut orders: Vec<WorkOrder>) -> StorageResult<Vec<WorkOrder>> {
        let names = self.db.org_unit_names().await?;
        for o in &mut orders {
            o.from_unit_name = names.get(&o.from_unit_id).cloned().unwrap_or_default();
            let mut rs: Vec<Recipient> = with_pool!(self.db, p => sqlx::query_as(
                "SELECT unit_id, status, received_at_ms, reply, reply_attachments, replied_at_ms, returned_reason, accepted_at_ms, \
                 reminded_at_ms, reminders FROM work_order_recipients WHERE order_id = $1 ORDER BY unit_id")
                .bind(&o.id).fetch_all(p).await?);
            for r in &mut rs {
                r.unit_name = names.get(&r.unit_id).cloned().unwrap_or_default();
            }
            rs.sort_by(|a, b| a.unit_name.cmp(&b.unit_name));
            o.recipients = rs;
        }
        Ok(orders)
    }

    /// One order visible to `scope` (as sender or recipient).
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<WorkOrder> {
        let mut b = SqlBuilder::default();
        let from = subtree("w.from_unit_id", scope, &mut b);
        let to = subtree("r.unit_id", scope, &mut b);
        let idp = b.s(id);
        let sql = format!(
            "SELECT {COLS} FROM work_orders w WHERE w.id = {idp} AND ({from} OR EXISTS \
             (SELECT 1 FROM work_order_recipients r WHERE r.order_id = w.id AND {to}))"
        );
        let o: Option<WorkOrder> = with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_optional(p).await?);
        let o = o.ok_or(StorageError::NotFound("work order"))?;
        Ok(self.decorate(vec![o]).await?.remove(0))
    }

    /// A page of the caller's outbox or inbox, newest first.
    pub async fn list(
        &self,
        scope: &Scope,
        which: Mailbox,
        status: Option<&str>,
        page: PageRequest,
    ) -> StorageResult<Page<WorkOrder>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![match which {
            Mailbox::Outbox => subtree("w.from_unit_id", scope, &mut b),
            Mailbox::Inbox => {
                let to = subtree("r.unit_id", scope, &mut b);
                format!("EXISTS (SELECT 1 FROM work_order_recipients r WHERE r.order_id = w.id AND {to})")
            }
        }];
        if let Some(s) = status {
            conds.push(format!("w.status = {}", b.s(s)));
        }
        let wh = conds.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM work_orders w WHERE {wh}");
        let n = b.args.len();
        let lim = b.i(page.page_size);
        let off = b.i(page.offset());
        let sql = format!("SELECT {COLS} FROM work_orders w WHERE {wh} ORDER BY w.created_at_ms DESC, w.id DESC LIMIT {lim} OFFSET {off}");
        let (total, items): (i64, Vec<WorkOrder>) = with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args[..n]).fetch_one(p).await?;
            let items = bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?;
            (total, items)
        });
        Ok(Page {
            items: self.decorate(items).await?,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Dispatch a new order from `from_unit_id` (input validated by the caller).
    pub async fn create(
        &self,
        from_unit_id: &str,
        input: &WorkOrderInput,
        deadline_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<String> {
        let now = audit.at_ms;
        let id = crate::new_id();
        let prefix = format!("GD{}", crate::enforcement::shanghai_year(now));
        let a = audit
            .clone()
            .target("work_order", &id)
            .details(serde_json::to_value(input).unwrap_or_default());
        let account = audit.actor.account_id.clone();
        let keys = serde_json::to_string(&input.attachment_keys).unwrap_or_else(|_| "[]".into());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let seq = next_seq!(&mut *tx, &prefix);
            sqlx::query("INSERT INTO work_orders (id, number, title, body, from_unit_id, created_by, deadline_ms, attachments, status, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9)")
                .bind(&id).bind(format!("{prefix}-{seq:06}")).bind(input.title.trim()).bind(input.body.trim()).bind(from_unit_id)
                .bind(&account).bind(deadline_ms).bind(&keys).bind(now).execute(&mut *tx).await?;
            for u in &input.recipient_unit_ids {
                sqlx::query("INSERT INTO work_order_recipients (order_id, unit_id, status) VALUES ($1, $2, 'dispatched')")
                    .bind(&id).bind(u).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(id)
    }

    /// Move recipient `unit_id` of an open order from one of `from` states to `to`, setting
    /// `sets` (column, value); the WHERE guard makes a concurrent second move fail.
    async fn step(
        &self,
        order: &WorkOrder,
        unit_id: &str,
        from: &[&str],
        to: &str,
        sets: Vec<(&str, Arg)>,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        if order.status != "open" {
            return Err(StorageError::wrong_state(
                "work order",
                order.status.clone(),
                "the work order is closed",
            ));
        }
        let r = order
            .recipients
            .iter()
            .find(|r| r.unit_id == unit_id)
            .ok_or(StorageError::NotFound("recipient"))?;
        if !from.contains(&r.status.as_str()) {
            return Err(StorageError::wrong_state(
                "recipient",
                r.status.clone(),
                format!("not allowed: the recipient must be {}", from.join(" or ")),
            ));
        }
        let details: serde_json::Map<String, serde_json::Value> = sets
            .iter()
            .map(|(c, v)| {
                let v = match v {
                    Arg::S(s) => serde_json::json!(s),
                    Arg::I(i) => serde_json::json!(i),
                };
                (c.to_string(), v)
            })
            .collect();
        let mut b = SqlBuilder::default();
        let st = b.s(to);
        let assigns: Vec<String> = sets
            .into_iter()
            .map(|(c, v)| format!("{c} = {}", b.arg(v)))
            .collect();
        let oid = b.s(order.id.clone());
        let uid = b.s(unit_id);
        let states: Vec<String> = from.iter().map(|f| b.s(*f)).collect();
        let sql = format!(
            "UPDATE work_order_recipients SET status = {st}, {} WHERE order_id = {oid} AND unit_id = {uid} AND status IN ({})",
            assigns.join(", "),
            states.join(", ")
        );
        let a = audit
            .clone()
            .target("work_order", &order.id)
            .details(serde_json::json!({"unit_id": unit_id, "status": to, "set": details}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = bind_args!(sqlx::query(&sql), b.args).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("recipient", "changed", "the recipient's state changed meanwhile")); }
            sqlx::query("UPDATE work_orders SET updated_at_ms = $2 WHERE id = $1").bind(&order.id).bind(a.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The recipient acknowledges receipt.
    pub async fn receive(
        &self,
        order: &WorkOrder,
        unit_id: &str,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let sets = vec![("received_at_ms", Arg::I(Some(audit.at_ms)))];
        self.step(order, unit_id, &["dispatched"], "received", sets, audit)
            .await
    }

    /// The recipient replies (after receiving it, or after a return).
    pub async fn reply(
        &self,
        order: &WorkOrder,
        unit_id: &str,
        text: &str,
        keys: &[String],
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let sets = vec![
            ("replied_at_ms", Arg::I(Some(audit.at_ms))),
            ("reply", Arg::S(Some(text.to_string()))),
            (
                "reply_attachments",
                Arg::S(Some(
                    serde_json::to_string(keys).unwrap_or_else(|_| "[]".into()),
                )),
            ),
        ];
        self.step(
            order,
            unit_id,
            &["received", "returned"],
            "replied",
            sets,
            audit,
        )
        .await
    }

    /// The sender returns an insufficient reply.
    pub async fn return_reply(
        &self,
        order: &WorkOrder,
        unit_id: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let sets = vec![("returned_reason", Arg::S(Some(reason.to_string())))];
        self.step(order, unit_id, &["replied"], "returned", sets, audit)
            .await
    }

    /// The sender accepts a reply.
    pub async fn accept(
        &self,
        order: &WorkOrder,
        unit_id: &str,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let sets = vec![("accepted_at_ms", Arg::I(Some(audit.at_ms)))];
        self.step(order, unit_id, &["replied"], "accepted", sets, audit)
            .await
    }

    /// Remind every recipient that has not replied; returns how many were reminded.
    pub async fn remind(&self, order: &WorkOrder, audit: &AuditEntry) -> StorageResult<u64> {
        if order.status != "open" {
            return Err(StorageError::wrong_state(
                "work order",
                order.status.clone(),
                "the work order is closed",
            ));
        }
        let a = audit.clone().target("work_order", &order.id);
        let n = with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE work_order_recipients SET reminded_at_ms = $2, reminders = reminders + 1 \
                                 WHERE order_id = $1 AND status IN ('dispatched','received','returned')")
                .bind(&order.id).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            let a = a.details(serde_json::json!({"reminded": n}));
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    /// The scheduled reminder: every recipient that has not replied to an open order due within
    /// `ahead_ms` (or overdue) and was not reminded in the last `every_ms` is reminded (counted,
    /// timestamped, one audit row per order). Returns how many recipients were reminded.
    pub async fn auto_remind(
        &self,
        ahead_ms: i64,
        every_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<u64> {
        let now = audit.at_ms;
        let pending = "status IN ('dispatched','received','returned') AND (reminded_at_ms IS NULL OR reminded_at_ms < $2)";
        let sql_orders = format!(
            "SELECT DISTINCT r.order_id FROM work_order_recipients r JOIN work_orders w ON w.id = r.order_id \
             WHERE w.status = 'open' AND w.deadline_ms < $1 AND r.{pending} ORDER BY r.order_id"
        );
        let sql_update = format!(
            "UPDATE work_order_recipients SET reminded_at_ms = $3, reminders = reminders + 1 WHERE order_id = $1 AND {pending}"
        );
        let mut total = 0;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let orders: Vec<String> = sqlx::query_scalar(&sql_orders)
                .bind(now + ahead_ms).bind(now - every_ms).fetch_all(&mut *tx).await?;
            for o in orders {
                let n = sqlx::query(&sql_update).bind(&o).bind(now - every_ms).bind(now)
                    .execute(&mut *tx).await?.rows_affected();
                let a = audit.clone().target("work_order", &o).details(serde_json::json!({"reminded": n, "scheduled": true}));
                insert_audit!(&mut *tx, &a)?;
                total += n;
            }
            tx.commit().await?;
        });
        Ok(total)
    }

    /// Close the order: every recipient accepted, or `force` with a note.
    pub async fn close(
        &self,
        order: &WorkOrder,
        note: &str,
        force: bool,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        if order.status != "open" {
            return Err(StorageError::wrong_state(
                "work order",
                order.status.clone(),
                "the work order is already closed",
            ));
        }
        let pending: Vec<&str> = order
            .recipients
            .iter()
            .filter(|r| r.status != "accepted")
            .map(|r| r.unit_name.as_str())
            .collect();
        if !pending.is_empty() && !force {
            return Err(StorageError::wrong_state(
                "work order",
                order.status.clone(),
                format!("replies not yet accepted: {}", pending.join("、")),
            ));
        }
        let a = audit
            .clone()
            .target("work_order", &order.id)
            .details(serde_json::json!({"note": note, "forced": force && !pending.is_empty()}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE work_orders SET status = 'closed', close_note = $2, closed_at_ms = $3, updated_at_ms = $3 WHERE id = $1 AND status = 'open'")
                .bind(&order.id).bind(note).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("work order", "closed", "the work order is already closed")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }
}
