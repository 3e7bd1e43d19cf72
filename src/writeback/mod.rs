//! The write desk: every write command, whichever path it came by, is
//! judged here (known tag, writable, type, limits, rate, age), handed to
//! its link's task, recorded in the history and answered.
//!
//! SKELETON: filled in by the desk work.
