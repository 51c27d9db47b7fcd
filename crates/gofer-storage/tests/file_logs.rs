//! Logs as local files pass the log store conformance checks.

#[tokio::test]
async fn file_logs_pass_the_conformance_checks() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    gofer_storage::conformance::log_store(&gofer_storage::FileLogStore::new(dir.path().to_path_buf())).await;
}
