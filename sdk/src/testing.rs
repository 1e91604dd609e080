//! Builders for requests in a policy's native unit tests.
