//! Single-use SIP nonces on both engines: issued, used once, refused the second time, refused
//! when expired, purged.

mod common;

use shouhu_storage::Db;

async fn single_use(db: &Db) {
    let n = db.sip_nonces();
    n.issue("a", 10_000).await.unwrap();
    n.issue("b", 10_000).await.unwrap();
    n.issue("old", 1_000).await.unwrap();
    // Issuing again keeps the first row.
    n.issue("a", 20_000).await.unwrap();
    assert!(!n.consume("never-issued", 5_000).await.unwrap());
    assert!(n.consume("a", 5_000).await.unwrap());
    assert!(
        !n.consume("a", 5_000).await.unwrap(),
        "a nonce is used once"
    );
    assert!(
        !n.consume("old", 5_000).await.unwrap(),
        "an expired nonce is refused"
    );
    n.issue("c", 2_000).await.unwrap();
    assert_eq!(n.purge_expired(5_000).await.unwrap(), 1);
    assert!(n.consume("b", 5_000).await.unwrap());
    // Two racing uses of one nonce: exactly one wins.
    n.issue("race", 10_000).await.unwrap();
    let (x, y) = tokio::join!(n.consume("race", 5_000), n.consume("race", 5_000));
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
