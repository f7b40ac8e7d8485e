//! Route policy evaluation — stub.
