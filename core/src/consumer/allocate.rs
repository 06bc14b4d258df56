//! Queue allocation strategies (being written).
