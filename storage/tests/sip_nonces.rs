//! Single-use SIP nonces on both engines: the first use of a nonce records it, a second use
//! (a replay, another node) finds it used, two racing uses have exactly one winner, and expired
//! rows are purged.

mod common;

use shouhu_storage::Db;

async fn single_use(db: &Db) {
    let n = db.sip_nonces();
    assert!(n.spend("a", 10_000).await.unwrap(), "first use");
    assert!(!n.spend("a", 10_000).await.unwrap(), "a nonce is used once");
    assert!(
        !n.spend("a", 20_000).await.unwrap(),
        "another expiry changes nothing"
    );
    assert!(n.spend("b", 10_000).await.unwrap());
    assert!(n.spend("old", 1_000).await.unwrap());
    assert!(n.spend("c", 2_000).await.unwrap());
    assert_eq!(n.purge_expired(5_000).await.unwrap(), 2);
    assert_eq!(n.purge_expired(5_000).await.unwrap(), 0);
    // Unexpired rows stay used after a purge.
    assert!(!n.spend("a", 10_000).await.unwrap());
    assert!(!n.spend("b", 10_000).await.unwrap());
    // Two racing uses of one nonce: exactly one wins.
    let (x, y) = tokio::join!(n.spend("race", 10_000), n.spend("race", 10_000));
    assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|w| **w).count(), 1);
}

#[tokio::test]
async fn nonces_are_single_use_sqlite() {
    let t = common::sqlite().await;
    single_use(&t.db).await;
}

#[tokio::test]
async fn nonces_are_single_use_postgres() {
    let Some(t) = common::postgres().await else {
        return;
    };
    single_use(&t.db).await;
}
