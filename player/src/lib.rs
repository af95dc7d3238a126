//! Music262 player (being written).
