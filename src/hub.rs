//! Routing of traps to device instances (in progress).
