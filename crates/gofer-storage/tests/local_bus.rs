//! The in-process event bus passes the bus conformance checks.

#[tokio::test]
async fn the_local_bus_passes_the_conformance_checks() {
    gofer_storage::conformance::event_bus(&gofer_storage::LocalBus::default()).await;
}
