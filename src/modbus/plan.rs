//! Read planning (pure).
