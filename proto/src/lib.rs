//! Music262 wire protocol (being written).
