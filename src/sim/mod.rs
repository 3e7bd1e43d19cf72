//! The plant simulator: Modbus servers backed by a seeded plant model.
