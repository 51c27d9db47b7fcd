//! The schema on a real PostgreSQL server that the test starts itself (`test_server`): migrated once however many
//! servers connect at once, and a newer schema refused untouched.

#![allow(clippy::unwrap_used)]

use gofer_storage_postgres::test_server::TestServer;
use gofer_storage_postgres::{OpenError, PostgresStorage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_migrated_once_however_many_servers_start_together() {
    let server = TestServer::start();
    let url = server.url();
    // Three servers at once: one migrates, the others wait for its lock and find the work done.
    let connecting: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { PostgresStorage::connect(&url, 2).await }
            })
        })
        .collect();
    let mut storages = Vec::new();
    for connection in connecting {
        storages.push(connection.await.unwrap().unwrap());
    }
    let known = PostgresStorage::known_schema_version();
    for storage in &storages {
        assert_eq!(storage.schema_version().await.unwrap(), known);
    }
    // Connecting again changes nothing.
    let again = PostgresStorage::connect(&url, 1).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), known);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_untouched_and_bad_settings_are_named() {
    let server = TestServer::start();
    let storage = PostgresStorage::connect(&server.url(), 1).await.unwrap();
    let newer = PostgresStorage::known_schema_version() + 1;
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.execute("UPDATE gofer_schema SET version = $1", &[&newer]).await.unwrap();
    drop(storage);

    match PostgresStorage::connect(&server.url(), 1).await {
        Err(error @ OpenError::NewerSchema { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&format!("schema version {newer}")), "{message}");
            assert!(message.contains("127.0.0.1") && !message.contains("gofer@"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let kept: i64 = client.query_one("SELECT version FROM gofer_schema", &[]).await.unwrap().get(0);
    assert_eq!(kept, newer, "the newer schema was left as it was");

    let bad_url = PostgresStorage::connect("postgres://gofer@127.0.0.1:notaport/x", 1).await.unwrap_err();
    assert!(bad_url.to_string().contains("storage.url"), "{bad_url}");
    assert!(matches!(PostgresStorage::connect(&server.url(), 0).await, Err(OpenError::PoolSize)));
    // Nobody listening: named, without the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let away = PostgresStorage::connect(&format!("postgres://gofer:hunter2@127.0.0.1:{closed}/gofer"), 1).await;
    let message = away.unwrap_err().to_string();
    assert!(message.contains(&format!("127.0.0.1:{closed}/gofer")) && !message.contains("hunter2"), "{message}");
}
