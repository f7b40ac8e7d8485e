//! RFC 6750 §2 bearer token extraction — stub.
