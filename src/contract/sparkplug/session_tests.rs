//! Tests of `session`: the wire form of births, data, deaths and rows.
