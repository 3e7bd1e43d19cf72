//! Registers to typed, scaled values (pure).
