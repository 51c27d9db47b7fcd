//! The SQLite backend passes the shared storage conformance suite, on a real file with WAL.

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = gofer_storage_sqlite::SqliteStorage::open(&dir.path().join("gofer.db")).expect("open");
    gofer_storage::conformance::run_all(&store).await;
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gofer.db");
    let ns = gofer_api::models::Namespace {
        id: "keep".into(),
        name: "Keep".into(),
        description: String::new(),
        created: 1,
        modified: 1,
    };
    {
        let store = gofer_storage_sqlite::SqliteStorage::open(&path).expect("open");
        gofer_storage::NamespaceStore::create_namespace(&store, &ns).await.expect("create");
    }
    let store = gofer_storage_sqlite::SqliteStorage::open(&path).expect("reopen");
    assert_eq!(gofer_storage::NamespaceStore::get_namespace(&store, "keep").await.expect("get"), ns);
}

#[test]
fn a_database_from_a_newer_gofer_is_refused_without_touching_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gofer.db");
    drop(gofer_storage_sqlite::SqliteStorage::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", 999).expect("bump version");
    drop(conn);
    let err = gofer_storage_sqlite::SqliteStorage::open(&path).err().expect("must refuse");
    assert!(err.to_string().contains("schema version 999"), "{err}");
}
