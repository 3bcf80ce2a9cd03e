//! Prometheus metrics (being written).

/// The node's metrics.
#[derive(Debug, Default)]
pub struct Metrics;
