//! Sans-IO synchronization core of Music262 (being written).
